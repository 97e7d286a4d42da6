#!/usr/bin/env bash
# Cache (issue 5):
#   A. no-op rerun of a 10,000-task pipeline (one input file and one output file per task,
#      `cp in/N.txt out/N.txt`): `taskrun cache.toml` after a run that filled the cache, vs
#      `ninja` after a build of the equivalent build.ninja; same hyperfine run.
#   B. hashing a 1 GiB file: `cargo bench --bench hash` (taskrun's hash_file vs openssl), and
#      `openssl dgst -sha256` / `sha256sum` on the same file under hyperfine.
#
# usage: bench/cache.sh [noop] [hash]      (default both; env: BENCH_WORK, TASKRUN, RUNS)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need hyperfine ninja openssl sha256sum python3
RUNS=${RUNS:-20}
parts=("$@")
[[ ${#parts[@]} -eq 0 ]] && parts=(noop hash)

noop() {
    local d=$BENCH_WORK/cache-noop
    log "generating 10,000 cp tasks in $d"
    python3 "$BENCH_DIR/gen.py" cache "$d" --tasks 10000
    cd "$d"
    log "ninja: first build"
    ninja -j2 >/dev/null
    local cmds=()
    if have_taskrun; then
        log "taskrun: first run (fills the cache)"
        rm -rf .taskrun out && mkdir out
        local t0=$SECONDS
        "$TASKRUN" cache.toml -j2 -q --progress never
        log "taskrun first run: $((SECONDS - t0)) s"
        # The no-op rerun must run nothing: every task cached.
        "$TASKRUN" cache.toml -q --progress never --report "$BENCH_WORK/noop-report.json"
        python3 - "$BENCH_WORK/noop-report.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print(f"no-op rerun summary: {s}", file=sys.stderr)
if s["cached"] != s["total"]:
    sys.exit("the no-op rerun ran tasks: not a no-op")
PY
        cmds+=("$TASKRUN cache.toml -q --progress never")
    else
        log "taskrun not measured: $TASKRUN missing or without 'run'"
    fi
    [[ $(ninja -n | grep -c '^\[' || true) == 0 ]] || die "ninja has work left: not a no-op"
    hf cache-noop "$RUNS" 3 "${cmds[@]}" "ninja"
    if have_taskrun; then
        peak_rss "taskrun no-op rerun (10,000 tasks)" "$TASKRUN" cache.toml -q --progress never
        peak_rss "ninja no-op (10,000 edges)" ninja
    fi
}

hash() {
    local f=$BENCH_WORK/www/huge/g.bin
    log "1 GiB test file: $f"
    python3 "$BENCH_DIR/gen.py" fixtures "$BENCH_WORK/www"
    cat "$f" >/dev/null
    # taskrun hashes a task's inputs for its cache key: a task with the 1 GiB file as its one
    # input, cache = "on", with no cache (so no stat record) before each run.
    local h=$BENCH_WORK/hash cmds=()
    mkdir -p "$h"
    ln -f "$f" "$h/g.bin"
    printf 'version = 1\n[pipeline]\nname = "bench-hash"\n\n[tasks.hash]\nrun = "true"\ninputs = ["g.bin"]\ncache = "on"\n' >"$h/hash.toml"
    cd "$h"
    sleep 1 # the link changed the file's ctime: keep the racy-timestamp rule out of the fast path
    if have_taskrun; then
        cmds+=("$TASKRUN hash.toml -q --progress never")
    fi
    hf hash "${RUNS_HASH:-6}" 1 --prepare 'rm -rf .taskrun' "${cmds[@]}" "openssl dgst -sha256 g.bin" "sha256sum g.bin"
    if have_taskrun; then
        # The stat fast path: the same task, cache filled, file unchanged: no re-hash.
        "$TASKRUN" hash.toml -q --progress never
        hf hash-cached "${RUNS_HASH:-6}" 1 "$TASKRUN hash.toml -q --progress never"
    fi
    log "cargo bench --bench hash (builds the bench profile)"
    (cd "$REPO_ROOT" && cargo bench --bench hash 2>/dev/null) | tee "$RESULTS/cargo-bench-hash.txt"
}

for p in "${parts[@]}"; do
    case $p in
        noop) noop ;;
        hash) hash ;;
        *) die "unknown part '$p' (noop, hash)" ;;
    esac
done

{
    echo "### Cache (issue 5)"
    machine_info
    echo "- tools: ninja $(ninja --version), $(openssl version | cut -d' ' -f1-2), $(sha256sum --version | head -1)"
    if [[ -f $RESULTS/cache-noop.r1.json && " ${parts[*]} " == *" noop "* ]]; then
        echo
        echo "A. No-op rerun, 10,000 tasks \`cp in/N.txt out/N.txt\` (one input, one output each), in \`$BENCH_WORK/cache-noop\`, after a full run:"
        echo
        python3 "$BENCH_DIR/report.py" cache-noop
        [[ -f $RESULTS/rss.tsv ]] && { echo; grep -E 'no-op' "$RESULTS/rss.tsv" | tail -n2 | awk -F'\t' '{printf "- peak RSS, %s: %.1f MiB\n", $1, $2/1024}'; }
    fi
    if [[ " ${parts[*]} " == *" hash "* ]]; then
        echo
        echo "B. SHA-256 of one 1 GiB file in the page cache (tmpfs), in \`$BENCH_WORK/hash\`. taskrun: a task with that file as its one input and \`cache = \"on\"\`, \`.taskrun\` removed before each run (so the time includes startup and one \`true\`):"
        echo
        python3 "$BENCH_DIR/report.py" hash
        if [[ -f $RESULTS/hash-cached.r1.json ]]; then
            echo
            echo "The same taskrun task again with its cache entry and stat record in place (no re-hash):"
            echo
            python3 "$BENCH_DIR/report.py" hash-cached
        fi
        echo
        echo '`cargo bench --bench hash` (best of 3, its own 1 GiB temp file):'
        echo
        sed 's/^/    /' "$RESULTS/cargo-bench-hash.txt"
    fi
} | tee "$RESULTS/cache.md"
