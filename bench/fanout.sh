#!/usr/bin/env bash
# Fan-out and lockfile (issue 12, SPEC sections 9 and 10), taskrun and its peers in the same
# hyperfine runs:
#   plan       `taskrun check` and `taskrun plan` (text and --format json) of a 100,000-line
#              urls.txt fan-out (`for_each = { lines = "urls.txt" }`, one download each) vs the
#              same 100,000 downloads as hand-written tasks (get-f000001, ...); peak RSS of each
#              plan (GNU time). Targets: under 1 s, at most 1.5x the hand-written time.
#   downloads  1,000 x 64 KiB from a list file (nginx on 127.0.0.1, the fixtures of
#              bench/downloads.sh), all at concurrency 16: taskrun `for_each = { lines =
#              "small.urls" }` without pins (a first run: it pins every file in small-list.lock,
#              removed before each run) and with every pin from a lockfile (small-locked.lock,
#              written by bench/gen.py in the format of SPEC section 10; --locked), the
#              hand-written manifests of bench/downloads.sh for reference, and `wget2 -i` (also
#              followed by `sha256sum -c`, the check it lacks), `aria2c -i`, `xargs -P16 curl`,
#              bench/peers/aiohttp_dl.py. Targets: no slower
#              than wget2 without pins, within 1.15x of it with every file verified.
#   noop       no-op rerun of 10,000 fan-out instances (`cp in/N.txt out/N.txt`, one input and
#              one output each, `for_each = { lines = "files.txt" }`) vs ninja on the same files
#              and the hand-written 10,000-task no-op rerun of bench/cache.sh (own directory).
#              Target: within 2x of ninja.
#   later      a fan-out expanded after the task that produces its items (issue 12 stretch):
#              `unpack` copies 1,000 files into unpacked/, `clean` runs once per file there
#              (`for_each = { glob = "unpacked/*.txt" }`, two phases in one run), against the
#              same fan-out over files already there (one phase): a first run and a no-op rerun.
#              No target; the cost of the second phase (the manifest loaded again, the glob
#              read, a second scheduler pass) is what it shows.
#
# usage: bench/fanout.sh [plan] [downloads] [noop] [later]   (default: all four)
# env: BENCH_WORK, TASKRUN, RUNS, PORT (nginx, default 18088); see bench/lib.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need hyperfine python3 ninja
parts=("$@")
[[ ${#parts[@]} -eq 0 ]] && parts=(plan downloads noop later)
for p in "${parts[@]}"; do
    [[ $p =~ ^(plan|downloads|noop|later)$ ]] || die "unknown part '$p' (plan, downloads, noop, later)"
done
have_taskrun || die "fanout.sh measures taskrun: $TASKRUN missing or without 'run'"

plan() {
    local d=$BENCH_WORK/fanout-plan
    log "generating the 100,000-download fan-out and hand-written manifests in $d"
    python3 "$BENCH_DIR/gen.py" fanout-plan "$d" --tasks 100000 --base "$BASE"
    cd "$d"
    rm -rf .taskrun raw
    local m
    for m in fanout hand; do
        "$TASKRUN" check $m.toml >&2 || die "taskrun check $m.toml failed"
    done
    hf fanout-plan "${RUNS:-10}" 1 \
        "$TASKRUN check fanout.toml" "$TASKRUN check hand.toml" \
        "$TASKRUN plan fanout.toml" "$TASKRUN plan hand.toml" \
        "$TASKRUN plan fanout.toml --format json" "$TASKRUN plan hand.toml --format json"
    [[ ! -e .taskrun && ! -e raw ]] || die "check/plan wrote something"
    for m in fanout hand; do
        peak_rss "check $m.toml (100,000)" "$TASKRUN" check $m.toml
        peak_rss "plan $m.toml (100,000)" "$TASKRUN" plan $m.toml
        peak_rss "plan $m.toml --format json (100,000)" "$TASKRUN" plan $m.toml --format json
    done
    "$TASKRUN" plan fanout.toml --format json | wc -c >"$RESULTS/fanout-plan-json.bytes"
}

downloads() {
    need nginx curl aria2c wget2 xargs sha256sum
    python3 -c 'import aiohttp' 2>/dev/null || die "python aiohttp is missing (pip install aiohttp)"
    local d=$BENCH_WORK/fanout-dl
    gen_fixtures
    python3 "$BENCH_DIR/gen.py" fanout-downloads "$d" --base "$BASE" --root "$WWW" --name small \
        --files $(fixture_files small)
    start_nginx
    cd "$d"
    "$TASKRUN" check small-locked.toml --locked >&2 || die "small-locked.lock is not accepted by --locked"
    # A run without pins pins every file on first use (small-list.lock); remove it each time.
    local prepare='rm -rf out .taskrun small-list.lock small-unpinned.lock && mkdir -p out'
    local aio=$BENCH_DIR/peers/aiohttp_dl.py
    {
        printf 'taskrun list, no pins\t%s\n' "$TASKRUN small-list.toml -j16 --no-cache -q --progress never"
        printf 'taskrun list, lockfile pins\t%s\n' "$TASKRUN small-locked.toml -j16 --no-cache --locked -q --progress never"
        printf 'taskrun hand-written, no pins\t%s\n' "$TASKRUN small-unpinned.toml -j16 --no-cache -q --progress never"
        printf 'taskrun hand-written, inline pins\t%s\n' "$TASKRUN small.toml -j16 --no-cache -q --progress never"
        # What a user at a terminal gets by default: the live view, drawn into a pseudo-terminal.
        if command -v script >/dev/null; then
            printf 'taskrun list, lockfile pins, live view (pty)\t%s\n' "script -qec '$TASKRUN small-locked.toml -j16 --no-cache --locked --progress always' /dev/null"
        fi
        printf 'wget2 -i\t%s\n' "wget2 -q --max-threads=16 -i small.urls -P out/small"
        # wget2 verifies nothing; the same followed by the check a script would add.
        printf 'wget2 -i, then sha256sum -c\t%s\n' "sh -c 'wget2 -q --max-threads=16 -i small.urls -P out/small && sha256sum -c --quiet small.sha256'"
        printf 'aria2c -i\t%s\n' "aria2c -q -j16 -i small.urls -d out/small --allow-overwrite=true --auto-file-renaming=false"
        printf 'xargs -P16 curl\t%s\n' "xargs -P16 -n1 curl -s --create-dirs --output-dir out/small -O < small.urls"
        printf 'aiohttp\t%s\n' "python3 $aio small.sha256 -j16 --base $BASE"
        printf 'aiohttp+sha256\t%s\n' "python3 $aio small.sha256 -j16 --base $BASE --hash"
    } >"$BENCH_WORK/fanout-dl-cmds.tsv"
    local cmds=() cmd
    while IFS=$'\t' read -r _ cmd; do cmds+=("$cmd"); done <"$BENCH_WORK/fanout-dl-cmds.tsv"
    log "timing the list form: ${#cmds[@]} commands"
    hf fanout-dl "${RUNS:-15}" 2 --prepare "$prepare" "${cmds[@]}"
    check_tools fanout-dl "$prepare" small.sha256 <"$BENCH_WORK/fanout-dl-cmds.tsv"
    # The run without pins must have pinned every file (trust on first use).
    eval "$prepare"
    "$TASKRUN" small-list.toml -j16 --no-cache -q --progress never
    grep -c '^\[\[download\]\]' small-list.lock >"$RESULTS/fanout-dl-tofu.count"
    cmp -s small-list.lock small-locked.lock && echo same >>"$RESULTS/fanout-dl-tofu.count" ||
        echo differs >>"$RESULTS/fanout-dl-tofu.count"
    eval "$prepare"
    stop_bg
}

noop() {
    local d=$BENCH_WORK/fanout-noop
    log "generating 10,000 cp instances in $d/fan and 10,000 hand-written cp tasks in $d/hand"
    python3 "$BENCH_DIR/gen.py" fanout-cache "$d/fan" --tasks 10000
    python3 "$BENCH_DIR/gen.py" cache "$d/hand" --tasks 10000
    local m
    for m in fan/fanout.toml hand/cache.toml; do
        (
            cd "$d/$(dirname $m)"
            ninja -j2 >/dev/null
            rm -rf .taskrun out && mkdir out
            log "taskrun $m: first run (fills the cache)"
            "$TASKRUN" "$(basename $m)" -j2 -q --progress never
            "$TASKRUN" "$(basename $m)" -q --progress never --report "$BENCH_WORK/noop-report.json"
            python3 - "$BENCH_WORK/noop-report.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print(f"no-op rerun summary: {s}", file=sys.stderr)
if s["cached"] != s["total"] or s["total"] != 10000:
    sys.exit("the no-op rerun ran tasks: not a no-op")
PY
            [[ $(ninja -n | grep -c '^\[' || true) == 0 ]] || die "ninja has work left: not a no-op"
        )
    done
    cd "$d/fan"
    hf fanout-noop "${RUNS:-20}" 3 \
        "$TASKRUN fanout.toml -q --progress never" \
        "cd ../hand && $TASKRUN cache.toml -q --progress never" \
        "ninja"
    peak_rss "no-op rerun, 10,000 fan-out instances" "$TASKRUN" fanout.toml -q --progress never
    peak_rss "no-op rerun, 10,000 hand-written tasks" env -C ../hand "$TASKRUN" cache.toml -q --progress never
    peak_rss "ninja no-op (10,000 edges)" ninja
}

later() {
    local d=$BENCH_WORK/fanout-later
    log "generating 1,000 files in $d/later/src and the same files in $d/direct/unpacked"
    rm -rf "$d" && mkdir -p "$d/later/src" "$d/direct/unpacked"
    local i
    for i in $(seq 1 1000); do echo "$i" >"$d/later/src/f$i.txt"; done
    cp "$d"/later/src/*.txt "$d/direct/unpacked/"
    cat >"$d/later/later.toml" <<'TOML'
[tasks.unpack]
inputs = ["src/*.txt"]
outputs = ["unpacked"]
run = "rm -rf unpacked && cp -r src unpacked"

[tasks.clean]
deps = ["unpack"]
for_each = { glob = "unpacked/*.txt" }
outputs = ["clean/${item.stem}.out"]
run = "mkdir -p clean && cp ${item.path} clean/${item.stem}.out"
TOML
    cat >"$d/direct/direct.toml" <<'TOML'
[tasks.clean]
for_each = { glob = "unpacked/*.txt" }
inputs = ["${item.path}"]
outputs = ["clean/${item.stem}.out"]
run = "mkdir -p clean && cp ${item.path} clean/${item.stem}.out"
TOML
    cd "$d"
    hf fanout-later-first "${RUNS_FIRST:-5}" 0 \
        --prepare "rm -rf later/.taskrun later/unpacked later/clean direct/.taskrun direct/clean" \
        "$TASKRUN later/later.toml -q --progress never" \
        "$TASKRUN direct/direct.toml -q --progress never"
    "$TASKRUN" later/later.toml -q --progress never
    "$TASKRUN" direct/direct.toml -q --progress never
    hf fanout-later-noop "${RUNS:-20}" 3 \
        "$TASKRUN later/later.toml -q --progress never" \
        "$TASKRUN direct/direct.toml -q --progress never"
}

for p in "${parts[@]}"; do
    case $p in
        plan) plan ;;
        downloads) downloads ;;
        noop) noop ;;
        later) later ;;
    esac
done

# rss_rows REGEX: the last peak_rss record of each label matching REGEX, in first-seen order.
rss_rows() {
    awk -F'\t' -v re="$1" '$1 ~ re { if (!($1 in v)) k[++n] = $1; v[$1] = $2; c[$1] = $3 }
        END { for (i = 1; i <= n; i++) printf "- peak RSS, %s: %.1f MiB (exit %s)\n", k[i], v[k[i]] / 1024, c[k[i]] }' "$RESULTS/rss.tsv"
}
{
    echo "### Fan-out and lockfile (issue 12)"
    machine_info
    if [[ " ${parts[*]} " == *" plan "* ]]; then
        echo
        echo "A. \`check\` and \`plan\` of 100,000 downloads, as one \`for_each = { lines = \"urls.txt\" }\` task (\`fanout.toml\`) and as 100,000 hand-written tasks (\`hand.toml\`, $(du -h "$BENCH_WORK/fanout-plan/hand.toml" | cut -f1)), in \`$BENCH_WORK/fanout-plan\`; output to /dev/null (the JSON plan of the fan-out is $(cat "$RESULTS/fanout-plan-json.bytes") bytes):"
        echo
        python3 "$BENCH_DIR/report.py" fanout-plan
        echo
        rss_rows '^(check|plan) (fanout|hand)'
    fi
    if [[ " ${parts[*]} " == *" downloads "* ]]; then
        echo
        echo "B. 1,000 x 64 KiB from a list file, concurrency 16, nginx on $BASE, in \`$BENCH_WORK/fanout-dl\` (prepare: \`rm -rf out .taskrun small-list.lock small-unpinned.lock && mkdir -p out\`):"
        tools_info
        echo
        python3 "$BENCH_DIR/report.py" fanout-dl
        echo
        echo "One more run of each under \`/usr/bin/time\`, then every file checked against its sha256:"
        echo
        cat "$RESULTS/fanout-dl-check.md"
        echo
        echo "A run without pins wrote $(head -1 "$RESULTS/fanout-dl-tofu.count") entries to small-list.lock ($(tail -1 "$RESULTS/fanout-dl-tofu.count") from the generated small-locked.lock)."
    fi
    if [[ " ${parts[*]} " == *" noop "* ]]; then
        echo
        echo "C. No-op rerun of 10,000 \`cp in/N.txt out/N.txt\` (one input, one output each) after a full run: the fan-out (\`$BENCH_WORK/fanout-noop/fan\`, one task over the lines of files.txt), the hand-written tasks (\`../hand\`, bench/cache.sh's manifest) and ninja on the fan-out's files:"
        echo "- tools: ninja $(ninja --version)"
        echo
        python3 "$BENCH_DIR/report.py" fanout-noop
        echo
        rss_rows '^(no-op rerun, 10,000|ninja no-op)'
    fi
    if [[ " ${parts[*]} " == *" later "* ]]; then
        echo
        echo "D. A fan-out expanded after its producer (\`later.toml\`: \`unpack\` then 1,000 \`clean[*]\` instances, two phases) against the same fan-out over files already there (\`direct.toml\`, one phase), in \`$BENCH_WORK/fanout-later\`; first runs, then no-op reruns:"
        echo
        python3 "$BENCH_DIR/report.py" fanout-later-first
        echo
        python3 "$BENCH_DIR/report.py" fanout-later-noop
    fi
} | tee "$RESULTS/fanout.md"
