#!/usr/bin/env bash
# Scheduler overhead (issue 3), taskrun and its peers measured in the same hyperfine run:
#   A. 10,000 group tasks in a layered DAG: the whole `taskrun M -q --progress never` process
#      vs an empty `make` run of the equivalent Makefile and bench/peers/asyncio_dag.py.
#   B. 1,000 independent `true` command tasks at -j2 vs `make -j2` and `xargs -P2`.
#
# usage: bench/scheduler.sh          (env: BENCH_WORK, TASKRUN, RUNS; see bench/lib.sh)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need hyperfine make python3 xargs
RUNS=${RUNS:-20}

dag=$BENCH_WORK/sched-dag
tru=$BENCH_WORK/sched-true
log "generating workloads in $dag and $tru"
python3 "$BENCH_DIR/gen.py" dag "$dag" --tasks 10000 --width 100
python3 "$BENCH_DIR/gen.py" true "$tru" --tasks 1000

peer=$BENCH_DIR/peers/asyncio_dag.py
a=() b=() a_prep=()
if have_taskrun; then
    # Sanity: taskrun must run the workloads successfully before we time them.
    (cd "$dag" && "$TASKRUN" dag.toml -q --progress never) || die "taskrun failed on dag.toml"
    (cd "$tru" && "$TASKRUN" true.toml -j2 -q --progress never) || die "taskrun failed on true.toml"
    # Two rows: a first run after the manifest changed (nothing remembered: `.taskrun`
    # removed) and a rerun of the unchanged manifest (`run` remembers the validated manifest
    # in .taskrun/manifest; spelled `run dag.toml` to tell the rows apart). Per-command
    # --prepare: the rerun keeps only .taskrun/manifest.
    a=("$TASKRUN dag.toml -q --progress never" "$TASKRUN run dag.toml -q --progress never")
    a_prep=(--prepare 'rm -rf .taskrun' --prepare 'rm -rf .taskrun/runs .taskrun/logs .taskrun/cache')
    b=("$TASKRUN true.toml -j2 -q --progress never")
else
    log "taskrun not measured: $TASKRUN missing or without 'run'"
fi

log "A. 10,000 group tasks, layered DAG"
cd "$dag"
hf sched-dag "$RUNS" 3 "${a_prep[@]}" --prepare 'rm -rf .taskrun' --prepare 'rm -rf .taskrun' \
    "${a[@]}" \
    "make -s -f Makefile" \
    "python3 $peer dag.toml"

log "B. 1,000 true command tasks, 2 at a time"
cd "$tru"
hf sched-true "$RUNS" 2 --prepare 'rm -rf .taskrun' \
    "${b[@]}" \
    "make -s -j2 -f Makefile" \
    "seq 1000 | xargs -P2 -n1 true" \
    "python3 $peer -j2 true.toml"

{
    echo "### Scheduler (issue 3)"
    machine_info
    echo "- tools: $(make --version | head -1), $(python3 --version), hyperfine $(hyperfine --version | cut -d' ' -f2)"
    echo
    echo "A. 10,000 group tasks in a layered DAG (100 per layer, 2 deps each), in \`$dag\`:"
    echo
    python3 "$BENCH_DIR/report.py" sched-dag
    echo
    echo "B. 1,000 independent \`true\` command tasks, 2 at a time, in \`$tru\`:"
    echo
    python3 "$BENCH_DIR/report.py" sched-true
} | tee "$RESULTS/scheduler.md"
