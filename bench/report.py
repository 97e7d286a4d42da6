#!/usr/bin/env python3
"""Print hyperfine JSON results (bench/lib.sh `hf`) as a Markdown table.

usage: bench/report.py RESULTS.json...   (one table row per command, median first)
"""
import json
import statistics
import sys


def fmt(s):
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.3f} s"


def main(paths):
    print("| command | median | mean ± σ | min | max | runs |")
    print("|---|---:|---:|---:|---:|---:|")
    for p in paths:
        with open(p) as f:
            data = json.load(f)
        for r in data["results"]:
            times = r["times"]
            med = statistics.median(times)
            sd = statistics.stdev(times) if len(times) > 1 else 0.0
            cmd = r["command"].replace("|", "\\|")
            print(f"| `{cmd}` | **{fmt(med)}** | {fmt(r['mean'])} ± {fmt(sd)} | {fmt(min(times))} | {fmt(max(times))} | {len(times)} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
