#!/usr/bin/env bash
# Timings page and trace of a 10,000-task run (issue 16, SPEC §12): a 10,000-instance fan-out
# of `true` commands on 8 slots, then a summary task.
#   - the page's size, and the time `taskrun timings` takes to write it from the report;
#   - the run's wall time with and without --timings (ROUNDS alternating runs, medians);
#   - the time headless Chromium takes to load the page (--dump-dom), less that of an empty
#     page, when chromium is installed;
#   - the trace's size and the run with --trace (its write time alone: cargo bench --bench timings).
#
# usage: bench/timings.sh          (env: BENCH_WORK, TASKRUN, ROUNDS; see bench/lib.sh)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3
have_taskrun || die "$TASKRUN missing (cargo build --release)"
ROUNDS=${ROUNDS:-3}

dir=$BENCH_WORK/timings
rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
python3 - <<'PY'
with open("items.txt", "w") as f:
    f.write("".join(f"item-{i:05}\n" for i in range(10_000)))
with open("t.toml", "w") as f:
    f.write('[pipeline]\nname = "timings-bench"\nconcurrency = 8\n\n'
            '[tasks.work]\nfor_each = { lines = "items.txt" }\nkey = "${item.line}"\n'
            'run = "true"\ncache = "off"\n\n'
            '[tasks.summary]\ndeps = ["work"]\nrun = "true"\n')
PY

# ms since the epoch
now() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

log "warm-up run"
"$TASKRUN" t.toml -q --progress never >/dev/null
plain=() with=() traced=()
for r in $(seq "$ROUNDS"); do
    log "round $r of $ROUNDS"
    t=$(now); "$TASKRUN" t.toml -q --progress never >/dev/null; plain+=($(($(now) - t)))
    t=$(now); "$TASKRUN" t.toml -q --progress never --timings >/dev/null; with+=($(($(now) - t)))
    t=$(now); "$TASKRUN" t.toml -q --progress never --trace trace.json >/dev/null; traced+=($(($(now) - t)))
done
page=$(ls -t .taskrun/runs/*.html | head -1)
writes=()
for r in $(seq 5); do
    t=$(now); "$TASKRUN" timings t.toml latest -o page.html >/dev/null; writes+=($(($(now) - t)))
done
p=$(printf '%s\n' "${plain[@]}" | median)
w=$(printf '%s\n' "${with[@]}" | median)
tr=$(printf '%s\n' "${traced[@]}" | median)
printf 'run, 10,000 tasks (median of %s)        %6s ms\n' "$ROUNDS" "$p"
printf 'run with --timings                      %6s ms  (%+.1f%%)\n' "$w" "$(echo "($w - $p) * 100 / $p" | bc -l)"
printf 'run with --trace                        %6s ms  (%+.1f%%)\n' "$tr" "$(echo "($tr - $p) * 100 / $p" | bc -l)"
printf 'taskrun timings (report -> page)        %6s ms  (median of 5, whole process)\n' "$(printf '%s\n' "${writes[@]}" | median)"
printf 'page size                               %6.2f MB\n' "$(echo "$(stat -c %s "$page") / 1000000" | bc -l)"
printf 'trace size                              %6.2f MB\n' "$(echo "$(stat -c %s trace.json) / 1000000" | bc -l)"

browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -n $browser ]]; then
    # The page records when it was parsed and laid out (performance.now() after a forced
    # layout, in its data-ready-ms attribute): the browser's start-up is not counted.
    ready=()
    for r in $(seq 5); do
        ready+=($("$browser" --headless --no-sandbox --disable-gpu --user-data-dir="$dir/profile" \
            --dump-dom "file://$dir/page.html" 2>/dev/null | grep -o 'data-ready-ms="[0-9]*"' | tr -dc 0-9))
    done
    printf 'chromium: page parsed and laid out in    %6s ms  (median of 5)\n' "$(printf '%s\n' "${ready[@]}" | median)"
else
    log "chromium not installed: browser load time not measured"
fi
