#!/usr/bin/env bash
# The gRPC remote cache (issue 15, SPEC §11) next to the HTTP one (SPEC §5): machine B's first
# run of N tasks `cp in/N.txt out/N.txt` that machine A already ran and uploaded, served by
# BuildGrid's ActionCache + CAS (`[cache] remote = "grpc://..."`, the test cluster of
# tests/remote_exec/cluster) or by nginx WebDAV (the Bazel HTTP protocol), and running every
# command itself (`--no-cache`). Both servers on loopback.
#
# usage: bench/grpc_cache.sh   (env: BENCH_WORK, TASKRUN, RUNS, TASKS (default 100),
#                               DAV_PORT (default 18091); needs tests/remote_exec/cluster/install.sh)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need hyperfine nginx curl python3
have_taskrun || die "taskrun is needed here ($TASKRUN): cargo build --release"
RUNS=${RUNS:-10}
TASKS=${TASKS:-100}
DAV_PORT=${DAV_PORT:-18091}
venv=${TASKRUN_BUILDGRID_VENV:-$HOME/.cache/taskrun-buildgrid/venv}
[ -x "$venv/bin/python" ] || die "no BuildGrid virtualenv: run tests/remote_exec/cluster/install.sh"
http=http://127.0.0.1:$DAV_PORT
work=$BENCH_WORK/grpc-cache

rm -rf "$work"
start_dav "$work"
npid=$DAV_PID
# The cluster tears itself down when its stdin closes: hold it open with a fifo.
mkfifo "$work/cluster.in"
"$venv/bin/python" "$REPO_ROOT/tests/remote_exec/cluster/cluster.py" --bots 1 --instance "" --stdio digest \
    <"$work/cluster.in" >"$work/cluster.out" 2>"$work/cluster.err" &
cpid=$!
exec 9>"$work/cluster.in"
trap 'exec 9>&-; kill $npid 2>/dev/null || true; wait $cpid $npid 2>/dev/null || true' EXIT
for _ in $(seq 600); do
    grep -q '^READY' "$work/cluster.out" 2>/dev/null && break
    grep -q '^FAILED' "$work/cluster.out" 2>/dev/null && die "cluster: $(cat "$work/cluster.out")"
    sleep 0.2
done
grpc=$(sed -n 's/^READY .*"url": "\([^"]*\)".*/\1/p' "$work/cluster.out")
[ -n "$grpc" ] || die "the cluster did not start: $(tail -5 "$work/cluster.err")"
log "BuildGrid at $grpc, nginx at $http"

python3 "$BENCH_DIR/gen.py" cache "$work/src" --tasks "$TASKS"
for kind in grpc http; do
    url=$grpc; [ $kind = http ] && url=$http
    for m in a b; do
        mkdir -p "$work/$kind-$m/out"
        cp -r "$work/src/in" "$work/src/cache.toml" "$work/$kind-$m/"
        printf '\n[cache]\nremote = "%s"\n' "$url" >>"$work/$kind-$m/cache.toml"
    done
    t0=$(date +%s%N)
    (cd "$work/$kind-a" && "$TASKRUN" cache.toml -q --progress never)
    log "machine A ($kind): ran and uploaded $TASKS tasks in $((($(date +%s%N) - t0) / 1000000)) ms"
done

hf grpc-cache "$RUNS" 1 --prepare "rm -rf $work/grpc-b/.taskrun $work/grpc-b/out $work/http-b/.taskrun $work/http-b/out && mkdir $work/grpc-b/out $work/http-b/out" \
    "cd $work/grpc-b && $TASKRUN cache.toml -q --progress never" \
    "cd $work/http-b && $TASKRUN cache.toml -q --progress never" \
    "cd $work/http-b && $TASKRUN cache.toml -q --progress never --no-cache"
{
    echo "### gRPC remote cache (issue 15)"
    machine_info
    echo
    echo "Machine B's first run of $TASKS tasks \`cp in/N.txt out/N.txt\` (prepare: \`rm -rf .taskrun out && mkdir out\`), every one a remote hit: from BuildGrid $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("buildgrid"))') (gRPC), from nginx WebDAV (HTTP), and running the commands (\`--no-cache\`):"
    echo
    python3 "$BENCH_DIR/report.py" grpc-cache
} | tee "$RESULTS/grpc-cache.md"
