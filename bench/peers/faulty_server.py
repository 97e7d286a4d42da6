#!/usr/bin/env python3
"""A small fault-injecting HTTP/1.1 file server for the download fault benchmark (loopback only).

usage: faulty_server.py ROOT --port PORT [--fail-503 10] [--cut 13] [--seed 1]
                        [--lifetime 600] [--max-requests 100000] [--stats FILE]

Serves files under ROOT on 127.0.0.1:PORT with keep-alive, ETag, Range and If-Range. Faults, on
a fixed pseudo-random choice of files (by --seed), each only on the FIRST request of that path:
  * --fail-503 percent of the files answer 503 Service Unavailable (no Retry-After);
  * --cut percent of the files (disjoint from the 503 ones) send the headers with the full
    Content-Length, then about half of the body, then close the connection.
Later requests of the same path are served normally, so a client that retries and resumes ends
with every file complete. The server stops by itself after --lifetime seconds or
--max-requests requests, and on SIGTERM/SIGINT; then it writes per-path request counts and
fault totals to --stats (JSON).
"""
import argparse
import asyncio
import hashlib
import json
import os
import signal
import sys
from email.utils import formatdate

CHUNK = 256 * 1024


class Server:
    def __init__(self, a):
        self.root = os.path.realpath(a.root)
        self.a = a
        self.seen = {}
        self.faults = {"503": 0, "cut": 0}
        self.requests = 0
        self.stop = asyncio.Event()

    def fault_for(self, path):
        if path in self.seen:
            return None
        r = int(hashlib.sha256(f"{self.a.seed}:{path}".encode()).hexdigest()[:8], 16) % 10000
        if r < self.a.fail_503 * 100:
            return "503"
        if r < (self.a.fail_503 + self.a.cut) * 100:
            return "cut"
        return None

    async def handle(self, reader, writer):
        try:
            while not self.stop.is_set():
                line = await reader.readline()
                if not line:
                    break
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                parts = line.decode("latin-1").split()
                if len(parts) < 2:
                    break
                method, target = parts[0], parts[1]
                keep = await self.respond(writer, method, target.split("?")[0], headers)
                self.requests += 1
                if self.requests >= self.a.max_requests:
                    self.stop.set()
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def send(self, writer, status, reason, headers, body=b""):
        head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()

    async def respond(self, writer, method, target, headers):
        rel = target.lstrip("/")
        path = os.path.realpath(os.path.join(self.root, rel))
        if not path.startswith(self.root + os.sep) or not os.path.isfile(path):
            await self.send(writer, 404, "Not Found", {"Content-Length": "0"})
            return True
        fault = self.fault_for(rel)
        self.seen[rel] = self.seen.get(rel, 0) + 1
        if fault == "503":
            self.faults["503"] += 1
            body = b"busy\n"
            await self.send(writer, 503, "Service Unavailable",
                            {"Content-Length": str(len(body)), "Content-Type": "text/plain"}, body)
            return True
        st = os.stat(path)
        size = st.st_size
        etag = f'"{st.st_ino:x}-{size:x}-{st.st_mtime_ns:x}"'
        start, status, reason = 0, 200, "OK"
        rng = headers.get("range")
        if_range = headers.get("if-range")
        if rng and rng.startswith("bytes=") and (if_range is None or if_range == etag):
            spec = rng[6:].split(",")[0]
            s, _, e = spec.partition("-")
            if s.isdigit() and (e == "" or e.isdigit()) and int(s) < size:
                start = int(s)
                end = int(e) if e else size - 1
                status, reason = 206, "Partial Content"
                size_sent = end - start + 1
        if status == 200:
            size_sent = size
        hdrs = {"Content-Length": str(size_sent), "Content-Type": "application/octet-stream",
                "ETag": etag, "Accept-Ranges": "bytes",
                "Last-Modified": formatdate(st.st_mtime, usegmt=True)}
        if status == 206:
            hdrs["Content-Range"] = f"bytes {start}-{start + size_sent - 1}/{size}"
        await self.send(writer, status, reason, hdrs)
        if method == "HEAD":
            return True
        limit = size_sent
        if fault == "cut":
            self.faults["cut"] += 1
            limit = size_sent // 2
        with open(path, "rb") as f:
            f.seek(start)
            left = limit
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()
                left -= len(chunk)
        return fault != "cut"

    def write_stats(self):
        if self.a.stats:
            with open(self.a.stats, "w") as f:
                json.dump({"requests": self.requests, "faults": self.faults,
                           "paths": len(self.seen),
                           "retried_paths": sum(1 for v in self.seen.values() if v > 1)}, f)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--fail-503", type=float, default=10)
    p.add_argument("--cut", type=float, default=13)
    p.add_argument("--seed", default="1")
    p.add_argument("--lifetime", type=float, default=600)
    p.add_argument("--max-requests", type=int, default=100000)
    p.add_argument("--stats")
    a = p.parse_args()
    srv = Server(a)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, srv.stop.set)
    server = await asyncio.start_server(srv.handle, "127.0.0.1", a.port, backlog=1024)
    print(f"serving {srv.root} on 127.0.0.1:{a.port}", file=sys.stderr, flush=True)
    try:
        await asyncio.wait_for(srv.stop.wait(), a.lifetime)
    except asyncio.TimeoutError:
        pass
    server.close()
    srv.write_stats()


if __name__ == "__main__":
    asyncio.run(main())
