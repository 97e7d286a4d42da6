#!/usr/bin/env python3
"""The peer for the download benchmark: the asyncio + aiohttp downloader people write.

usage: aiohttp_dl.py LIST [-j 16] [--hash]

LIST is a sha256sum-style file ("<sha256>  <dest>"), one line per file, as bench/gen.py writes
it (NAME.sha256); the URL of <dest> is BASE/<dest without its first component>, BASE from
--base (default http://127.0.0.1:18088). A semaphore of -j bounds the downloads in flight;
bodies are streamed to disk in 256 KiB chunks. With --hash each body is hashed while it streams
and compared with its pin (the variant that verifies what it downloads, like taskrun does).
Exit 1 when any download fails or (with --hash) any pin mismatches. No retries.
"""
import argparse
import asyncio
import hashlib
import os
import sys

import aiohttp

CHUNK = 256 * 1024


async def fetch(session, sem, url, dest, pin, do_hash):
    async with sem:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        h = hashlib.sha256() if do_hash else None
        try:
            async with session.get(url) as resp:
                if resp.status != 200:
                    return f"{url}: HTTP {resp.status}"
                with open(dest, "wb") as f:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        f.write(chunk)
                        if h is not None:
                            h.update(chunk)
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            return f"{url}: {e!r}"
        if h is not None and h.hexdigest() != pin:
            return f"{url}: sha256 {h.hexdigest()} != {pin}"
        return None


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("list")
    p.add_argument("-j", "--jobs", type=int, default=16)
    p.add_argument("--hash", action="store_true")
    p.add_argument("--base", default="http://127.0.0.1:18088")
    a = p.parse_args()
    jobs = []
    with open(a.list) as f:
        for line in f:
            pin, dest = line.split(None, 1)
            dest = dest.strip()
            url = a.base + "/" + dest.split("/", 1)[1]
            jobs.append((url, dest, pin))
    sem = asyncio.Semaphore(a.jobs)
    conn = aiohttp.TCPConnector(limit=a.jobs)
    async with aiohttp.ClientSession(connector=conn) as session:
        errors = await asyncio.gather(*(fetch(session, sem, u, d, p_, a.hash) for u, d, p_ in jobs))
    errors = [e for e in errors if e]
    for e in errors[:10]:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
