# Shared helpers for the bench/*.sh scripts. Source it; do not run it.
#
# Environment (all optional):
#   BENCH_WORK  where fixtures, outputs and results go (default /dev/shm/taskrun-bench: tmpfs,
#               outside the repository; nothing generated is ever committed)
#   TASKRUN     the taskrun binary (default target/release/taskrun of this checkout). When it
#               is missing, or cannot run pipelines yet, the taskrun rows are skipped and the
#               peers are still measured.
#   RUNS        hyperfine runs per command (each script has its own default)
#   TASKRUN_COMMIT  the commit $TASKRUN was built from, for the results (default: this
#               checkout's HEAD; set it when TASKRUN is a copy built elsewhere)

# -h/--help on any bench script prints its header comment.
for _arg in "$@"; do
    if [[ $_arg == -h || $_arg == --help ]]; then
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 0
    fi
done

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
BENCH_WORK=${BENCH_WORK:-/dev/shm/taskrun-bench}
TASKRUN=${TASKRUN:-$REPO_ROOT/target/release/taskrun}
export RESULTS=$BENCH_WORK/results
mkdir -p "$RESULTS"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || die "$c is missing (see BENCHMARKS.md, 'Setup')"
    done
}

# have_taskrun: true when $TASKRUN exists and has the `run` subcommand.
have_taskrun() {
    [[ -x $TASKRUN ]] && "$TASKRUN" run --help >/dev/null 2>&1
}

# hf NAME RUNS WARMUP [hyperfine args...] COMMAND...: time the commands with hyperfine, in
# ROUNDS rounds (default 3) of about RUNS/ROUNDS runs each, so that all commands see the same
# background load on this shared machine (one long hyperfine run measures its commands one
# after the other). Exports $RESULTS/NAME.rN.json; bench/report.py merges the rounds.
hf() {
    local name=$1 runs=$2 warm=$3
    shift 3
    local rounds=${ROUNDS:-3}
    ((rounds > runs)) && rounds=$runs
    local per=$(((runs + rounds - 1) / rounds)) r
    rm -f "$RESULTS/$name".r*.json
    for ((r = 1; r <= rounds; r++)); do
        hyperfine --style basic --warmup "$warm" --runs "$per" \
            --export-json "$RESULTS/$name.r$r.json" "$@" >&2
    done
}

# peak_rss NAME CMD...: run CMD once under GNU time; record its peak RSS (KiB) and exit code
# in $RESULTS/NAME.rss ("label kib status"). Exit status of CMD is not fatal.
peak_rss() {
    local name=$1
    shift
    local tf
    tf=$(mktemp)
    local rc=0
    /usr/bin/time -f '%M' -o "$tf" "$@" >/dev/null 2>"$tf.err" || rc=$?
    local kib
    kib=$(tail -n1 "$tf")
    printf '%s\t%s\t%s\n' "$name" "$kib" "$rc" >>"$RESULTS/rss.tsv"
    printf '%s: peak RSS %s KiB (%.1f MiB), exit %s\n' "$name" "$kib" "$(echo "$kib/1024" | bc -l)" "$rc" >&2
    rm -f "$tf" "$tf.err"
}

# machine_info: the facts every results file starts with.
machine_info() {
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
    echo "- CPU flags: sha_ni=$(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no), avx2=$(grep -qw avx2 /proc/cpuinfo && echo yes || echo no)"
    echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared; see the notes)"
    if have_taskrun; then
        echo "- taskrun: $("$TASKRUN" --version) (${TASKRUN_COMMIT:-$(git -C "$REPO_ROOT" rev-parse --short HEAD)}, release build)"
    else
        echo "- taskrun: not measured ($TASKRUN missing or without \`run\`)"
    fi
}

# ---- Download setup shared by bench/downloads.sh and bench/fanout.sh ----------------------
# The random fixtures (kept between runs) and nginx serving them on 127.0.0.1 only.
#   WWW       $BENCH_WORK/www: small/fNNNN.bin 1,000 x 64 KiB, large/lNN.bin 20 x 50 MiB,
#             huge/g.bin 1 GiB
#   PORT      nginx's plain-HTTP port (default 18088); TLS_PORT its HTTPS port (default 18443,
#             the tests' self-signed certificate for 127.0.0.1, $CERT)
WWW=$BENCH_WORK/www
PORT=${PORT:-18088}
TLS_PORT=${TLS_PORT:-18443}
CERT_DIR=$REPO_ROOT/tests/fixtures/tls
CERT=$CERT_DIR/cert.pem
BASE=http://127.0.0.1:$PORT

# Background servers, stopped on exit (by their own pids; see stop_bg).
BG_PIDS=()
stop_bg() {
    local p
    for p in "${BG_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    BG_PIDS=()
}

# gen_fixtures: create (or keep) the random download fixtures in $WWW.
gen_fixtures() {
    log "fixtures in $WWW (random; kept between runs)"
    python3 "$BENCH_DIR/gen.py" fixtures "$WWW"
}

# fixture_files SET: the files of SET (small, large, huge) relative to $WWW.
fixture_files() { (cd "$WWW" && ls "$1"/*.bin); }

# wait_port PORT: until something answers on 127.0.0.1:PORT (at most 10 s).
wait_port() {
    local i
    for i in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    die "nothing answers on 127.0.0.1:$1"
}

# start_dav DIR: nginx WebDAV (the Bazel HTTP cache protocol: GET and PUT of whole files) on
# 127.0.0.1:$DAV_PORT, serving DIR/dav, its own files under DIR/nginx; waits until it answers.
# Its pid is in DAV_PID: the caller stops it (each script keeps its own EXIT trap).
start_dav() {
    local d=$1
    mkdir -p "$d/dav" "$d/nginx/tmp"
    # nginx's workers run as an unprivileged user: they must be able to write both.
    chmod 777 "$d/dav" "$d/nginx/tmp"
    cat >"$d/nginx/nginx.conf" <<NGINX
daemon off;
worker_processes 2;
pid $d/nginx/nginx.pid;
error_log $d/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path $d/nginx/tmp;
    server {
        listen 127.0.0.1:$DAV_PORT;
        location / { root $d/dav; dav_methods PUT; create_full_put_path on; client_max_body_size 0; }
    }
}
NGINX
    if curl -s -o /dev/null "http://127.0.0.1:$DAV_PORT/"; then die "port $DAV_PORT is taken; set DAV_PORT"; fi
    nginx -p "$d/nginx" -c "$d/nginx/nginx.conf" &
    DAV_PID=$!
    wait_port "$DAV_PORT"
}

# start_nginx: nginx (bench/nginx.conf) serving $WWW on $BASE and https://127.0.0.1:$TLS_PORT,
# in the foreground of a background job, stopped on exit. Installs the EXIT trap (stop_bg).
start_nginx() {
    local ngx=$BENCH_WORK/nginx
    mkdir -p "$ngx/tmp"
    sed -e "s#@WORK@#$ngx#g" -e "s#@ROOT@#$WWW#g" -e "s#@PORT@#$PORT#g" -e "s#@TLS_PORT@#$TLS_PORT#g" \
        -e "s#@CERT_DIR@#$CERT_DIR#g" "$BENCH_DIR/nginx.conf" >"$ngx/nginx.conf"
    if curl -s -o /dev/null "$BASE/"; then die "port $PORT is taken; set PORT"; fi
    trap stop_bg EXIT INT TERM
    nginx -p "$ngx" -c "$ngx/nginx.conf" &
    BG_PIDS+=($!)
    wait_port "$PORT"
    log "nginx $(nginx -v 2>&1 | cut -d/ -f2) serving $WWW on $BASE"
}

# verify_sha256 LIST: "ok missing corrupt" of the files a sha256sum-style LIST names (paths
# relative to the current directory).
verify_sha256() {
    python3 - "$1" <<'PY'
import hashlib, os, sys
ok = missing = bad = 0
for line in open(sys.argv[1]):
    pin, path = line.split(None, 1)
    path = path.strip()
    if not os.path.isfile(path):
        missing += 1
        continue
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while c := f.read(1 << 20):
            h.update(c)
    if h.hexdigest() == pin:
        ok += 1
    else:
        bad += 1
print(ok, missing, bad)
PY
}

# tools_info: the versions of the download peers (one line for a results file).
tools_info() {
    echo "- tools: nginx $(nginx -v 2>&1 | cut -d/ -f2), $(curl --version | head -1 | cut -d' ' -f1-2), $(aria2c --version | head -1), $(wget2 --version | head -1 | cut -d' ' -f1-3), Python $(python3 -c 'import sys,aiohttp; print(sys.version.split()[0], "+ aiohttp", aiohttp.__version__)'), hyperfine $(hyperfine --version | cut -d' ' -f2)"
}

# check_tools NAME PREPARE LIST: each "label<TAB>command" line of stdin once more under GNU
# time, after `eval PREPARE`: exit code, wall, peak RSS, and the files of the sha256sum-style
# LIST checked (verify_sha256). Writes the Markdown table $RESULTS/NAME-check.md.
check_tools() {
    local name=$1 prepare=$2 list=$3 label cmd wall kib ok missing bad
    local out=$RESULTS/$name-check.md
    echo "| tool | exit | wall | peak RSS | files ok / missing / corrupt |" >"$out"
    echo "|---|---:|---:|---:|---|" >>"$out"
    while IFS=$'\t' read -r label cmd; do
        eval "$prepare"
        local rc=0
        /usr/bin/time -f '%e %M' -o "$BENCH_WORK/time.out" bash -c "$cmd" >/dev/null 2>"$BENCH_WORK/cmd.err" </dev/null || rc=$?
        wall=$(tail -n1 "$BENCH_WORK/time.out" | cut -d' ' -f1)
        kib=$(tail -n1 "$BENCH_WORK/time.out" | cut -d' ' -f2)
        read -r ok missing bad < <(verify_sha256 "$list")
        printf '| %s | %s | %s s | %.1f MiB | %s / %s / %s |\n' "$label" "$rc" "$wall" "$(echo "$kib/1024" | bc -l)" "$ok" "$missing" "$bad" >>"$out"
        log "$name $label: exit $rc, ${wall}s, $kib KiB, ok $ok missing $missing corrupt $bad"
    done
}
