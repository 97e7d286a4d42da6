#!/usr/bin/env bash
# Remote cache (issue 5, SPEC §5): a second machine's first run, served by a shared remote.
#   Machine A runs 1,000 tasks `cp in/N.txt out/N.txt` with `[cache] remote` pointing at nginx
#   WebDAV on 127.0.0.1, which uploads every entry. Machine B, a copy of the sources without
#   `.taskrun` or outputs, then runs the same manifest: every task is a remote hit (its record
#   and its output's blob fetched, verified, restored). Measured in the same hyperfine run:
#   B served by the remote; B running every command itself (`--no-cache`); and curl fetching
#   the same records and blobs from the same nginx (the bare transfers, verifying nothing).
#
# usage: bench/remote.sh       (env: BENCH_WORK, TASKRUN, RUNS, DAV_PORT (default 18090))
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need hyperfine nginx curl python3
have_taskrun || die "taskrun is needed here ($TASKRUN): cargo build --release"
RUNS=${RUNS:-12}
DAV_PORT=${DAV_PORT:-18090}
remote=http://127.0.0.1:$DAV_PORT
work=$BENCH_WORK/remote

rm -rf "$work"
start_dav "$work"
npid=$DAV_PID
trap 'kill $npid 2>/dev/null || true; wait $npid 2>/dev/null || true' EXIT

# summary REPORT WANT_SOURCE: fails unless every task is cached from WANT_SOURCE.
summary() {
    python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["summary"]
sources = {t["cache_source"] for t in r["tasks"]}
print(f"summary {s}, cache sources {sources}", file=sys.stderr)
if s["cached"] != s["total"] or sources != {sys.argv[2]}:
    sys.exit(f"not every task came from the {sys.argv[2]} cache")
PY
}

python3 "$BENCH_DIR/gen.py" cache "$work/a" --tasks 1000
printf '\n[cache]\nremote = "%s"\nremote_write = true\n' "$remote" >>"$work/a/cache.toml"
cd "$work/a"
log "machine A: first run, uploading every entry to $remote"
t0=$(date +%s%N)
"$TASKRUN" cache.toml -q --progress never
upload_ms=$((($(date +%s%N) - t0) / 1000000))
files=$(find "$work/dav" -type f | wc -l)
log "machine A: $upload_ms ms; the remote holds $files files"

mkdir -p "$work/b/out"
cp -r "$work/a/in" "$work/a/cache.toml" "$work/b/"
cd "$work/b"
"$TASKRUN" cache.toml -q --progress never --report "$work/b-report.json"
summary "$work/b-report.json" remote
(cd "$work/dav" && find ac cas -type f | sort) |
    awk -v r="$remote" '{ printf "url = \"%s/%s\"\noutput = \"fetched/%s\"\n", r, $0, $0 }' >"$work/fetch.curl"
# One task with one 256 MiB output: where hashing, not round trips, is the cost of a hit.
mkdir -p "$work/big-a" "$work/big-b"
printf 'version = 1\n[pipeline]\nname = "bench-big"\n\n[cache]\nremote = "%s"\n\n[tasks.big]\noutputs = ["out/big.bin"]\nrun = "mkdir -p out && head -c 268435456 /dev/urandom > out/big.bin"\n' \
    "$remote" >"$work/big-a/big.toml"
cp "$work/big-a/big.toml" "$work/big-b/"
(cd "$work/big-a" && "$TASKRUN" big.toml -q --progress never)
big_blob=$(cd "$work/dav" && find cas -type f -size +100M | head -n1)
(cd "$work/big-b" && "$TASKRUN" big.toml -q --progress never --report "$work/big-report.json")
summary "$work/big-report.json" remote
(cd "$work/big-b" && hf remote-big "${RUNS_BIG:-6}" 1 --prepare 'rm -rf .taskrun out fetched.bin' \
    "$TASKRUN big.toml -q --progress never" \
    "curl -s -o fetched.bin $remote/$big_blob" \
    "sh -c 'curl -s $remote/$big_blob | tee fetched.bin | sha256sum'")

cd "$work/b"
hf remote "$RUNS" 1 --prepare 'rm -rf .taskrun out fetched && mkdir out' \
    "$TASKRUN cache.toml -q --progress never" \
    "$TASKRUN cache.toml -q --progress never --no-cache" \
    "curl -s --parallel --parallel-max 16 --create-dirs -K $work/fetch.curl"

{
    echo "### Remote cache (issue 5)"
    machine_info
    echo "- server: nginx $(nginx -v 2>&1 | cut -d/ -f2) with WebDAV (\`dav_methods PUT\`) on $remote, files on tmpfs; $(curl --version | head -1 | cut -d' ' -f1-2)"
    echo
    echo "Machine A's first run, which ran the 1,000 tasks and uploaded their $files records and blobs: $upload_ms ms (one run)."
    echo
    echo "Machine B's first run of the 1,000 tasks \`cp in/N.txt out/N.txt\` (in \`$work/b\`; prepare: \`rm -rf .taskrun out fetched && mkdir out\`): served by the remote, run by itself (\`--no-cache\`), and the remote's $files files fetched by curl:"
    echo
    python3 "$BENCH_DIR/report.py" remote
    echo
    echo "One task whose output is 256 MiB (in \`$work/big-b\`; prepare: \`rm -rf .taskrun out fetched.bin\`): machine B's remote hit, the blob fetched by curl, and fetched and hashed by curl | sha256sum:"
    echo
    python3 "$BENCH_DIR/report.py" remote-big
} | tee "$RESULTS/remote.md"
