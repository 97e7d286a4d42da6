#!/usr/bin/env bash
# Download throughput, memory and fault tolerance (issue 4), taskrun and its peers in the same
# hyperfine runs, all at concurrency 16, from a real nginx on 127.0.0.1, outputs on tmpfs.
#
# usage: bench/downloads.sh [small] [large] [huge] [faults] [https-small] [https-large]
#        (default: all six)
#   small   1,000 x 64 KiB
#   large   20 x 50 MiB (peak RSS of each tool)
#   In both, taskrun runs three ways: every download pinned to its sha256 (`NAME.toml`, with
#   --no-cache), without pins (`NAME-unpinned.toml`: what the peers do; taskrun pins each file
#   on first use in NAME-unpinned.lock, removed before every run), and
#   pinned with the cache on (a first run: each file is also copied into the store).
#   huge    one 1 GiB file (peak RSS: memory must not grow with file size)
#   faults  1,000 x 64 KiB from bench/peers/faulty_server.py: 10% of files answer 503 once,
#           13% are cut off mid-body once; which tools end with every file complete?
#   https-small, https-large   small and large over HTTPS (nginx with the tests' self-signed
#           certificate for 127.0.0.1, which every client is told to trust)
# env: BENCH_WORK (default /dev/shm/taskrun-bench, must be tmpfs for the published numbers),
#      TASKRUN, RUNS, PORT (nginx, default 18088), FAULT_PORT (default 18089); see bench/lib.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need hyperfine nginx curl aria2c wget2 python3 sha256sum
python3 -c 'import aiohttp' 2>/dev/null || die "python aiohttp is missing (pip install aiohttp)"

sets=("$@")
[[ ${#sets[@]} -eq 0 ]] && sets=(small large huge faults https-small https-large)
for s in "${sets[@]}"; do
    [[ $s =~ ^(small|large|huge|faults|https-small|https-large)$ ]] ||
        die "unknown set '$s' (small, large, huge, faults, https-small, https-large)"
done

# The fixtures, nginx and wait_port are shared with bench/fanout.sh (bench/lib.sh).
cert_dir=$CERT_DIR
cert=$CERT
FAULT_PORT=${FAULT_PORT:-18089}
base=$BASE
www=$WWW
dl=$BENCH_WORK/dl
mkdir -p "$dl"

gen_fixtures
files() { fixture_files "$1"; }
python3 "$BENCH_DIR/gen.py" downloads "$dl" --base "$base" --root "$www" --name small --files $(files small)
python3 "$BENCH_DIR/gen.py" downloads "$dl" --base "$base" --root "$www" --name large --files $(files large)
python3 "$BENCH_DIR/gen.py" downloads "$dl" --base "$base" --root "$www" --name huge --files $(files huge)
python3 "$BENCH_DIR/gen.py" downloads "$dl" --base "http://127.0.0.1:$FAULT_PORT" --root "$www" --name faults --files $(files small)
for s in small large; do
    python3 "$BENCH_DIR/gen.py" downloads "$dl" --base "https://127.0.0.1:$TLS_PORT" --root "$www" --name "https-$s" --files $(files $s)
done

start_nginx

cd "$dl"
have=0
have_taskrun && have=1
[[ $have == 1 ]] || log "taskrun not measured: $TASKRUN missing or without 'run'"
tr_cmd() {
    local trust=
    [[ $1 == https-* ]] && trust="env SSL_CERT_FILE=$cert "
    echo "$trust$TASKRUN $1.toml -j16 --no-cache -q --progress never"
}

# The commands of set NAME, one per line: "label<TAB>command" (run in $dl, after `prepare`).
commands() {
    local n=$1
    if [[ $n == https-* ]]; then
        local d=${n#https-}
        if [[ $have == 1 ]]; then
            printf 'taskrun\t%s\n' "$(tr_cmd "$n")"
            printf 'taskrun, no pins\t%s\n' "$(tr_cmd "$n-unpinned")"
        fi
        printf 'curl\t%s\n' "curl -s --cacert $cert --parallel --parallel-max 16 --create-dirs -K $n.curl"
        printf 'aria2c\t%s\n' "aria2c -q -j16 --ca-certificate=$cert -i $n.urls -d out/$d --allow-overwrite=true --auto-file-renaming=false"
        printf 'wget2\t%s\n' "wget2 -q --max-threads=16 --ca-certificate=$cert -i $n.urls -P out/$d"
        return
    fi
    if [[ $have == 1 ]]; then
        printf 'taskrun\t%s\n' "$(tr_cmd "$n")"
        if [[ $n != huge ]]; then
            # The peers' job: no pins. Since the lockfile (SPEC section 10) such a run pins
            # what it downloads on first use (hashes it, writes NAME-unpinned.lock at the end);
            # `prepare` removes that lockfile, so every run is such a first run.
            printf 'taskrun, no pins\t%s\n' "$(tr_cmd "$n-unpinned")"
            # The default: the cache on (a first run: every file is also copied into the store).
            printf 'taskrun, cache on\t%s\n' "$TASKRUN $n.toml -j16 -q --progress never"
        fi
    fi
    printf 'curl\t%s\n' "curl -s --parallel --parallel-max 16 --create-dirs -K $n.curl"
    printf 'aria2c\t%s\n' "aria2c -q -j16 -i $n.urls -d out/$n --allow-overwrite=true --auto-file-renaming=false"
    printf 'wget2\t%s\n' "wget2 -q --max-threads=16 -i $n.urls -P out/$n"
    if [[ $n != huge ]]; then
        printf 'aiohttp\t%s\n' "python3 $BENCH_DIR/peers/aiohttp_dl.py $n.sha256 -j16 --base $base"
        printf 'aiohttp+sha256\t%s\n' "python3 $BENCH_DIR/peers/aiohttp_dl.py $n.sha256 -j16 --base $base --hash"
    fi
    printf 'local copy\t%s\n' "cp -r $www/$n out/"
}
prepare='rm -rf out .taskrun ./*-unpinned.lock && mkdir -p out'

# verify NAME: "ok missing corrupt" of out/ against NAME.sha256.
verify() { verify_sha256 "$1.sha256"; }

# check SET: each tool once more under GNU time: exit code, wall, peak RSS, files verified.
check() { check_tools "dl-$1" "$prepare" "$1.sha256" < <(commands "$1"); }

timed() {
    local n=$1 runs=$2 warm=$3
    local cmds=()
    while IFS=$'\t' read -r _ cmd; do cmds+=("$cmd"); done < <(commands "$n")
    log "timing $n: ${#cmds[@]} commands x $runs runs"
    hf "dl-$n" "$runs" "$warm" --prepare "$prepare" "${cmds[@]}"
    check "$n"
}

# fault_run: every tool against a fresh faulty_server (its faults happen once per path).
fault_run() {
    local out=$RESULTS/dl-faults.md label cmd
    {
        echo "| tool | exit | wall | files ok / missing / corrupt | server: requests, 503s, cuts |"
        echo "|---|---:|---:|---|---|"
    } >"$out"
    local fbase=http://127.0.0.1:$FAULT_PORT
    {
        [[ $have == 1 ]] && printf 'taskrun (defaults: 3 attempts)\t%s\n' "$(tr_cmd faults)"
        printf 'wget2 (defaults)\t%s\n' "wget2 -q --max-threads=16 -i faults.urls -P out/small"
        printf 'curl (defaults)\t%s\n' "curl -s --parallel --parallel-max 16 --create-dirs -K faults.curl"
        printf 'curl --fail --retry 3\t%s\n' "curl -s --fail --retry 3 --parallel --parallel-max 16 --create-dirs -K faults.curl"
        printf 'aria2c (defaults)\t%s\n' "aria2c -q -j16 -i faults.urls -d out/small --allow-overwrite=true --auto-file-renaming=false"
        printf 'aiohttp (no retry)\t%s\n' "python3 $BENCH_DIR/peers/aiohttp_dl.py faults.sha256 -j16 --base $fbase --hash"
    } >"$BENCH_WORK/fault-cmds.tsv"
    while IFS=$'\t' read -r label cmd; do
        eval "$prepare"
        rm -f "$BENCH_WORK/faults.stats"
        python3 "$BENCH_DIR/peers/faulty_server.py" "$www" --port "$FAULT_PORT" --lifetime 600 \
            --stats "$BENCH_WORK/faults.stats" 2>/dev/null &
        local spid=$!
        BG_PIDS+=("$spid")
        wait_port "$FAULT_PORT"
        local rc=0
        /usr/bin/time -f '%e' -o "$BENCH_WORK/time.out" timeout 300 bash -c "$cmd" >/dev/null 2>"$BENCH_WORK/cmd.err" || rc=$?
        local wall
        wall=$(tail -n1 "$BENCH_WORK/time.out")
        kill "$spid"
        wait "$spid" 2>/dev/null || true
        local stats
        stats=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); f=d["faults"]; print(d["requests"], f["503"], f["cut"], sep=", ")' "$BENCH_WORK/faults.stats")
        read -r ok missing bad < <(verify faults)
        printf '| %s | %s | %s s | %s / %s / %s | %s |\n' "$label" "$rc" "$wall" "$ok" "$missing" "$bad" "$stats" >>"$out"
        log "faults $label: exit $rc, ${wall}s, ok $ok missing $missing corrupt $bad; server $stats"
        if [[ $label == taskrun* && $rc != 0 ]]; then
            sed -n '1,20p' "$BENCH_WORK/cmd.err" >&2
        fi
    done <"$BENCH_WORK/fault-cmds.tsv"
}

RUNS_SMALL=${RUNS:-10}
RUNS_LARGE=${RUNS:-5}
RUNS_HUGE=${RUNS:-3}
for s in "${sets[@]}"; do
    case $s in
        small) timed small "$RUNS_SMALL" 2 ;;
        large) timed large "$RUNS_LARGE" 1 ;;
        huge) timed huge "$RUNS_HUGE" 1 ;;
        faults) fault_run ;;
        https-small) timed https-small "$RUNS_SMALL" 2 ;;
        https-large) timed https-large "$RUNS_LARGE" 1 ;;
    esac
done
rm -rf out .taskrun

{
    echo "### Downloads (issue 4)"
    machine_info
    echo "- tools: nginx $(nginx -v 2>&1 | cut -d/ -f2), $(curl --version | head -1 | cut -d' ' -f1-2), $(aria2c --version | head -1), $(wget2 --version | head -1 | cut -d' ' -f1-3), Python $(python3 -c 'import sys,aiohttp; print(sys.version.split()[0], "+ aiohttp", aiohttp.__version__)')"
    echo "- server: nginx on $base (bench/nginx.conf: sendfile, 2 workers, access_log off); fixtures and outputs on tmpfs under $BENCH_WORK; the commands run in $dl"
    for s in small large huge https-small https-large; do
        [[ -f $RESULTS/dl-$s.r1.json && " ${sets[*]} " == *" $s "* ]] || continue
        echo
        echo "Set \`$s\` (hyperfine; prepare: \`$prepare\`):"
        echo
        python3 "$BENCH_DIR/report.py" dl-$s
        echo
        echo "One more run of each under \`/usr/bin/time\`, then every file checked against its sha256:"
        echo
        cat "$RESULTS/dl-$s-check.md"
    done
    if [[ " ${sets[*]} " == *" faults "* ]]; then
        echo
        echo "Faults: 1,000 x 64 KiB from bench/peers/faulty_server.py (10% of files 503 once, 13% cut mid-body once), fresh server per tool:"
        echo
        cat "$RESULTS/dl-faults.md"
    fi
} | tee "$RESULTS/downloads.md"
