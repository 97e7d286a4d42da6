#!/usr/bin/env python3
"""Times commands one run each, in turn, for ROUNDS rounds: on a shared machine every command
then sees the same load drift (hyperfine measures one command's runs back to back). The
order rotates from round to round, so no command always runs first.

usage: python3 bench/interleave.py [--keep-state] [--prepare 'SHELL CMD'] ROUNDS 'CMD' ['CMD'...]
       (run in the workload directory)

Each run starts without `.taskrun/`, after the --prepare command (say, `rm -rf out`).
--keep-state leaves `.taskrun/` alone (for a no-op rerun: give each binary its own workload
directory, `env -C DIR taskrun ...`, since the remembered manifest names the binary). Wall time is measured around the process, CPU
(user+sys) comes from its rusage, which includes the children it waited for.
"""
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time


def main():
    args = sys.argv[1:]
    prepare = None
    keep = False
    if args[:1] == ["--keep-state"]:
        keep, args = True, args[1:]
    if args[:1] == ["--prepare"]:
        prepare, args = args[1], args[2:]
    rounds, cmds = int(args[0]), args[1:]
    res = {c: ([], []) for c in cmds}
    for r in range(rounds):
        # Each round starts at the next command: a place in the round (after a cold page
        # cache, after a noisier neighbour) then favours none of them.
        for c in cmds[r % len(cmds):] + cmds[:r % len(cmds)]:
            if not keep:
                shutil.rmtree(".taskrun", ignore_errors=True)
            if prepare:
                subprocess.run(prepare, shell=True, check=True)
            t0 = time.perf_counter()
            p = subprocess.Popen(shlex.split(c), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t0
            if status != 0:
                print(f"FAILED ({status}): {c}", file=sys.stderr)
            res[c][0].append(wall * 1000)
            res[c][1].append((ru.ru_utime + ru.ru_stime) * 1000)
    print("| command | median wall | min wall | median CPU (user+sys) |")
    print("|---|---:|---:|---:|")
    for c in cmds:
        w, u = res[c]
        print(f"| `{c}` | {statistics.median(w):.1f} ms | {min(w):.1f} ms | "
              f"{statistics.median(u):.1f} ms |")


if __name__ == "__main__":
    main()
