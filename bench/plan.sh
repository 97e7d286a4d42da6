#!/usr/bin/env bash
# Planner (issue 2): `cargo bench --bench plan` loads, validates and plans generated manifests
# of 10,000 and 100,000 tasks (benches/plan.rs) and prints the medians. Also times
# `taskrun plan` as a whole process on the 10,000-task layered DAG of bench/scheduler.sh.
#
# usage: bench/plan.sh        (env: BENCH_WORK, TASKRUN, RUNS; see bench/lib.sh)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need cargo hyperfine python3
log "cargo bench --bench plan"
(cd "$REPO_ROOT" && cargo bench --bench plan 2>/dev/null) | tee "$RESULTS/cargo-bench-plan.txt"
d=$BENCH_WORK/sched-dag
python3 "$BENCH_DIR/gen.py" dag "$d" --tasks 10000 --width 100
if have_taskrun; then
    cd "$d"
    hf plan "${RUNS:-10}" 2 "$TASKRUN plan dag.toml --format json" "$TASKRUN check dag.toml"
fi
{
    echo "### Planner (issue 2)"
    machine_info
    echo
    echo '`cargo bench --bench plan` (in-process load + validate + plan, median):'
    echo
    sed 's/^/    /' "$RESULTS/cargo-bench-plan.txt"
    if [[ -f $RESULTS/plan.r1.json ]] && have_taskrun; then
        echo
        echo "Whole process on the 10,000-task layered DAG (\`$d/dag.toml\`):"
        echo
        python3 "$BENCH_DIR/report.py" plan
    fi
} | tee "$RESULTS/plan.md"
