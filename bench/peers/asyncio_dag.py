#!/usr/bin/env python3
"""The peer for the scheduler benchmark: the DAG runner people write with asyncio.

usage: asyncio_dag.py MANIFEST.toml [-j N]

Reads a taskrun manifest (tomllib) and runs it the usual asyncio way: one coroutine per task
that awaits its dependencies' futures, a semaphore of N for the tasks that run a command
(`run = "..."`, via create_subprocess_exec of the split string), and nothing for group tasks.
Exits 1 when a command fails. Only what the benchmarks need: no pools, retries or cache.
"""
import argparse
import asyncio
import os
import shlex
import sys
import tomllib


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("manifest")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count())
    a = p.parse_args()
    with open(a.manifest, "rb") as f:
        tasks = tomllib.load(f)["tasks"]
    sem = asyncio.Semaphore(a.jobs)
    loop = asyncio.get_running_loop()
    done = {name: loop.create_future() for name in tasks}

    async def run(name, spec):
        for dep in spec.get("deps", []):
            if not await done[dep]:
                done[name].set_result(False)
                return
        ok = True
        cmd = spec.get("run")
        if cmd is not None:
            argv = shlex.split(cmd) if isinstance(cmd, str) else cmd
            async with sem:
                proc = await asyncio.create_subprocess_exec(*argv)
                ok = await proc.wait() == 0
        done[name].set_result(ok)

    await asyncio.gather(*(run(n, s) for n, s in tasks.items()))
    failed = sum(1 for f in done.values() if not f.result())
    if failed:
        print(f"{failed} tasks failed or skipped", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
