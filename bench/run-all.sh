#!/usr/bin/env bash
# Runs every benchmark and prints the summary (the Markdown that BENCHMARKS.md records).
#
# usage: bench/run-all.sh [--build]
#   --build   cargo build --release first (otherwise the existing target/release/taskrun is
#             used; the taskrun rows are skipped when it is missing)
# env: BENCH_WORK (default /dev/shm/taskrun-bench), TASKRUN, RUNS; see bench/lib.sh.
# Needs: hyperfine nginx aria2 wget2 ninja-build (apt), aiohttp (pip), GNU time, openssl.
# Takes about 15 minutes; run it on a quiet machine (the load average is recorded).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
case ${1:-} in
    --build) (cd "$REPO_ROOT" && cargo build --release) ;;
    "") ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
esac
rm -f "$RESULTS"/*.json "$RESULTS"/*.md "$RESULTS"/rss.tsv
"$here/plan.sh"
"$here/scheduler.sh"
"$here/downloads.sh"
"$here/cache.sh"
"$here/fanout.sh"
"$here/remote.sh"
echo
echo "================ summary ================"
cat "$RESULTS/plan.md" "$RESULTS/scheduler.md" "$RESULTS/downloads.md" "$RESULTS/cache.md" "$RESULTS/fanout.md" "$RESULTS/remote.md"
echo
echo "(also in $RESULTS/*.md)"
