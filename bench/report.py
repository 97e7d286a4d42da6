#!/usr/bin/env python3
"""Print hyperfine JSON results (bench/lib.sh `hf`) as a Markdown table.

usage: bench/report.py NAME   (merges $RESULTS/NAME.r*.json, the rounds of bench/lib.sh `hf`)
       bench/report.py FILE.json...

One row per command: the median wall time over all runs of all rounds, mean and σ, min, max,
and the CPU time (user + system, mean), which the background load on a shared machine
disturbs much less than the wall time.
"""
import glob
import os
import json
import statistics
import sys


def fmt(s):
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.3f} s"


def main(args):
    paths = []
    for a in args:
        if a.endswith(".json"):
            paths.append(a)
        else:
            results = os.environ.get("RESULTS", ".")
            paths += sorted(glob.glob(os.path.join(results, f"{a}.r*.json")))
    merged = {}
    for p in paths:
        with open(p) as f:
            data = json.load(f)
        for r in data["results"]:
            m = merged.setdefault(r["command"], {"times": [], "cpu": []})
            m["times"] += r["times"]
            m["cpu"] += [u + s for u, s in zip(r.get("user_times") or [r["user"]] * len(r["times"]),
                                                 r.get("system_times") or [r["system"]] * len(r["times"]))]
    print("| command | median | mean ± σ | min | max | CPU (user+sys) | runs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for cmd, m in merged.items():
        times = m["times"]
        med = statistics.median(times)
        mean = statistics.mean(times)
        sd = statistics.stdev(times) if len(times) > 1 else 0.0
        cpu = statistics.mean(m["cpu"])
        c = cmd.replace("|", "\\|")
        print(f"| `{c}` | **{fmt(med)}** | {fmt(mean)} ± {fmt(sd)} | {fmt(min(times))} | {fmt(max(times))} | {fmt(cpu)} | {len(times)} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
