#!/usr/bin/env python3
"""Times commands one run each, in turn, for ROUNDS rounds: on a shared machine every command
then sees the same load drift (hyperfine measures one command's runs back to back). The
order rotates from round to round, so no command always runs first.

usage: python3 bench/interleave.py [--keep-state] [--prepare 'SHELL CMD'] ROUNDS 'CMD' ['CMD'...]
       ['--' 'CMD'...]  (a `--` starts a new group: the paired columns compare with its first)
       (run in the workload directory)

Each run starts without `.taskrun/`, after the --prepare command (say, `rm -rf out`).
--keep-state leaves `.taskrun/` alone (for a no-op rerun: give each binary its own workload
directory, `env -C DIR taskrun ...`, since the remembered manifest names the binary). Wall time is measured around the process, CPU
(user+sys) comes from its rusage, which includes the children it waited for. The "paired"
columns compare each command with the first one of its group round by round (median and quartiles of the
per-round ratios).
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
    rounds, cmds, first_of = int(args[0]), [], []
    group_first = None
    for a in args[1:]:
        if a == "--":
            group_first = None
            continue
        group_first = len(cmds) if group_first is None else group_first
        cmds.append(a)
        first_of.append(group_first)
    res = [([], []) for _ in cmds]
    for r in range(rounds):
        # Each round starts at the next command: a place in the round (after a cold page
        # cache, after a noisier neighbour) then favours none of them.
        for k in [(r + j) % len(cmds) for j in range(len(cmds))]:
            c = cmds[k]
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
            res[k][0].append(wall * 1000)
            res[k][1].append((ru.ru_utime + ru.ru_stime) * 1000)
    print("| command | median wall | min wall | median CPU (user+sys) "
          "| wall vs first, paired | CPU vs first, paired |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, c in enumerate(cmds):
        w, u = res[k]
        f = res[first_of[k]]
        print(f"| `{c}` | {statistics.median(w):.1f} ms | {min(w):.1f} ms | "
              f"{statistics.median(u):.1f} ms | {paired(w, f[0])} | {paired(u, f[1])} |")


def paired(xs, base):
    """The median of the per-round ratios to the first command, with their interquartile
    range: runs of one round share the machine's load, so their ratio is steadier than a
    ratio of medians."""
    ratios = sorted(x / b for x, b in zip(xs, base) if b > 0)
    if len(ratios) < 4:
        return "-"
    q1, med, q3 = statistics.quantiles(ratios, n=4)
    return f"{(med - 1) * 100:+.1f}% ({(q1 - 1) * 100:+.1f}..{(q3 - 1) * 100:+.1f})"

if __name__ == "__main__":
    main()
