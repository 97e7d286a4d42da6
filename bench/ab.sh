#!/usr/bin/env bash
# A/B of taskrun binaries, interleaved (bench/interleave.py: one run of each command in turn,
# so all see the same load), on the workloads a change must not slow down (issue 13: "the
# no-op rerun and download benchmarks must not regress by more than 3%"):
#   noop   the no-op rerun of 10,000 tasks `cp in/N.txt out/N.txt` (bench/cache.sh's
#          manifest). Each binary gets its own copy of the workload (the remembered manifest
#          names the binary that wrote it), filled by a first run and checked to be a no-op;
#          interleave.py --keep-state, `env -C DIR BIN cache.toml -q --progress never`.
#   small  1,000 x 64 KiB from nginx on 127.0.0.1 (bench/downloads.sh's small set), -j16
#          --no-cache: without pins (small-unpinned.toml; a binary with the lockfile pins them on
#          first use in small-unpinned.lock, removed before every run) and with every file
#          pinned inline (small.toml); wget2 in the same rounds as a gauge of the load.
#
# usage: bench/ab.sh [--rounds N] [--parts noop,small] LABEL=BINARY LABEL=BINARY...
#        (default 30 rounds, both parts; e.g. before=/tmp/taskrun-fd6bec7 after=target/release/taskrun)
# env: BENCH_WORK, PORT; see bench/lib.sh. Writes $RESULTS/ab.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3 ninja nginx curl wget2
rounds=30
parts=noop,small
while [[ ${1:-} == --* ]]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --parts) parts=$2; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done
(($# >= 2)) || die "give at least two LABEL=BINARY"
labels=() bins=()
for a in "$@"; do
    [[ $a == *=* ]] || die "expected LABEL=BINARY, got '$a'"
    labels+=("${a%%=*}")
    bins+=("$(realpath "${a#*=}")")
    [[ -x ${bins[-1]} ]] || die "${bins[-1]} is not executable"
done
out=$RESULTS/ab.md
: >"$out"
say() { echo "$*" | tee -a "$out"; }
il() { python3 "$BENCH_DIR/interleave.py" "$@" | tee -a "$out"; }

say "### A/B, interleaved ($rounds rounds)"
machine_info | grep -v '^- taskrun' | tee -a "$out"
for i in "${!bins[@]}"; do say "- ${labels[$i]}: ${bins[$i]} ($("${bins[$i]}" --version))"; done

# noop_ok DIR BIN: BIN's rerun in DIR runs nothing.
noop_ok() {
    (cd "$1" && "$2" cache.toml -q --progress never --report "$BENCH_WORK/ab-report.json" >&2)
    python3 - "$BENCH_WORK/ab-report.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
if s["cached"] != s["total"] or s["total"] != 10000:
    sys.exit(f"not a no-op: {s}")
PY
}

if [[ ,$parts, == *,noop,* ]]; then
    cmds=()
    for i in "${!bins[@]}"; do
        d=$BENCH_WORK/ab-noop/${labels[$i]}
        python3 "$BENCH_DIR/gen.py" cache "$d" --tasks 10000
        (cd "$d" && rm -rf .taskrun out && mkdir out && "${bins[$i]}" cache.toml -j2 -q --progress never >&2)
        noop_ok "$d" "${bins[$i]}"
        cmds+=("env -C $d ${bins[$i]} cache.toml -q --progress never")
    done
    log "no-op rerun, $rounds rounds"
    say
    say "No-op rerun of 10,000 tasks (bench/cache.sh's workload, one copy per binary under \`$BENCH_WORK/ab-noop/\`):"
    say
    (mkdir -p "$BENCH_WORK/ab-noop/cwd" && cd "$BENCH_WORK/ab-noop/cwd" && il --keep-state "$rounds" "${cmds[@]}")
    for i in "${!bins[@]}"; do noop_ok "$BENCH_WORK/ab-noop/${labels[$i]}" "${bins[$i]}"; done
fi

if [[ ,$parts, == *,small,* ]]; then
    dl=$BENCH_WORK/dl
    gen_fixtures
    python3 "$BENCH_DIR/gen.py" downloads "$dl" --base "$BASE" --root "$WWW" --name small --files $(fixture_files small)
    start_nginx
    cmds=()
    # Three groups, each compared with its first command round by round: pinned, unpinned
    # (a binary with the lockfile hashes every body for it: not the same work), the gauge.
    cmds=()
    for i in "${!bins[@]}"; do cmds+=("${bins[$i]} small.toml -j16 --no-cache -q --progress never"); done
    cmds+=(--)
    for i in "${!bins[@]}"; do cmds+=("${bins[$i]} small-unpinned.toml -j16 --no-cache -q --progress never"); done
    cmds+=(-- "wget2 -q --max-threads=16 -i small.urls -P out/small")
    log "1,000 x 64 KiB, $rounds rounds"
    say
    say "1,000 x 64 KiB at -j16 from nginx on $BASE, in \`$dl\` (prepare: \`rm -rf out small-unpinned.lock && mkdir -p out\`; \`.taskrun\` removed too):"
    say
    (cd "$dl" && il --prepare 'rm -rf out small-unpinned.lock && mkdir -p out' "$rounds" "${cmds[@]}")
    (cd "$dl" && rm -rf out .taskrun small-unpinned.lock)
    stop_bg
fi
