#!/usr/bin/env bash
# Remote execution (issue 15, SPEC §11): taskrun sending command tasks to a real BuildGrid
# 0.9.1 cluster (tests/remote_exec/cluster: PostgreSQL, `bgd server`, one worker process with
# N bots, all on 127.0.0.1), measured against the issue's targets:
#
#   1. overhead per cache-miss action, next to BuildGrid's own client `bgd execute` on the same
#      1-bot cluster: 10 distinct actions `sh -c 'echo TAG-NONCE-N > out/N.txt'` run one after
#      another (taskrun: one run of 10 tasks with -j1 and `[execution] jobs = 1`, one taskrun
#      process per task, and the same 1 s apart as bgd's start-up spaces its own actions; bgd:
#      one `bgd execute ... command` per action), plus the
#      start-up of `bgd --help` and `bgd execute command --help` (Python imports) as the part
#      of bgd's time that is not the action. A fresh NONCE per hyperfine run (`--var nonce=`)
#      keeps every action a miss for both. BuildGrid's own queueing time is read from its
#      `jobs` table (queued -> assigned to a bot -> completed, server clock).
#   2. 40 independent `sleep 1` tasks on an 8-bot cluster (default `[execution] jobs`, 16):
#      taskrun's wall time against the ideal 5 s (target <= 1.5x), and the same manifest run
#      here with `-j2 --remote-exec off`; then 3 runs with `jobs = 64` under `timeout 60` (see
#      part2 below: BuildGrid's concurrent-RPC limit).
#   3. 1,000 small cached actions (`cp in/N.txt out/N.txt`, bench/gen.py cache): workspace A
#      runs them on the cluster (filling its ActionCache; timed once), then workspace B, with
#      no local cache, is served by the cluster's ActionCache; next to the HTTP remote cache of
#      SPEC §5 (nginx WebDAV, filled the same way) and to running the commands here.
#   4. one remote task whose inputs are 8 random files of 128 MiB (1 GiB, on tmpfs):
#      taskrun's peak RSS (GNU time) on the first run (everything uploaded) and on a second,
#      different action over the same inputs (blobs already in the CAS); the cluster's disk
#      CAS before and after.
#
# usage: bench/remote_exec.sh   (env: BENCH_WORK, TASKRUN, RUNS_MISS (6), RUNS_SLEEP (4),
#        RUNS_CACHED (6), CACHED_TASKS (1000), PARTS ("1 2 3 4"), MISS_BOTS (1), DAV_PORT (18092);
#        needs tests/remote_exec/cluster/install.sh and psql)
# Takes ~13 minutes on 2 cores. Results: $BENCH_WORK/results/remote-exec.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need hyperfine nginx curl python3 psql /usr/bin/time
have_taskrun || die "taskrun is needed here ($TASKRUN): cargo build --release"
RUNS_MISS=${RUNS_MISS:-6}
RUNS_SLEEP=${RUNS_SLEEP:-4}
RUNS_CACHED=${RUNS_CACHED:-6}
CACHED_TASKS=${CACHED_TASKS:-1000}
PARTS=${PARTS:-1 2 3 4}
MISS_BOTS=${MISS_BOTS:-1}
DAV_PORT=${DAV_PORT:-18092}
venv=${TASKRUN_BUILDGRID_VENV:-$HOME/.cache/taskrun-buildgrid/venv}
[ -x "$venv/bin/python" ] || die "no BuildGrid virtualenv: run tests/remote_exec/cluster/install.sh"
BGD=$venv/bin/bgd
work=$BENCH_WORK/remote-exec
out=$RESULTS/remote-exec.md
q=(-q --progress never)

rm -rf "$work"
mkdir -p "$work"
rm -f "$out"
bg_version=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("buildgrid"))')

# ---- the cluster ---------------------------------------------------------------------------
# start_cluster BOTS: a fresh cluster; sets grpc, http_url, pg_url, cdir, spid, wpid. Its
# supervisor tears it down when its stdin (a fifo held open on fd 9) closes.
cpid=
start_cluster() {
    local bots=$1 t0
    t0=$(date +%s%N)
    rm -f "$work/cluster.in" "$work/cluster.out"
    mkfifo "$work/cluster.in"
    "$venv/bin/python" "$REPO_ROOT/tests/remote_exec/cluster/cluster.py" --bots "$bots" --instance "" --stdio digest \
        <"$work/cluster.in" >"$work/cluster.out" 2>"$work/cluster.err" &
    cpid=$!
    exec 9>"$work/cluster.in"
    for _ in $(seq 600); do
        grep -q '^READY' "$work/cluster.out" 2>/dev/null && break
        grep -q '^FAILED' "$work/cluster.out" 2>/dev/null && die "cluster: $(cat "$work/cluster.out")"
        sleep 0.2
    done
    grep -q '^READY' "$work/cluster.out" || die "the cluster did not start: $(tail -5 "$work/cluster.err")"
    read -r grpc port pg_port cdir spid wpid < <(sed -n 's/^READY //p' "$work/cluster.out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d["url"], d["port"], d["pg_port"], d["dir"], d["pids"]["server"], d["pids"]["worker"])')
    http_url=http://127.0.0.1:$port
    pg_url=postgresql://bgd@127.0.0.1:$pg_port/bgd
    log "BuildGrid $bg_version at $grpc with $bots bots, up in $((($(date +%s%N) - t0) / 1000000)) ms ($cdir)"
}
stop_cluster() {
    [ -n "$cpid" ] || return 0
    exec 9>&-
    wait "$cpid" 2>/dev/null || true
    cpid=
}
npid=
cleanup() {
    stop_cluster
    if [ -n "$npid" ]; then kill "$npid" 2>/dev/null || true; wait "$npid" 2>/dev/null || true; fi
}
trap cleanup EXIT INT TERM

# jobs_tsv: BuildGrid's jobs (command, queued, assigned to a bot, completed; epoch seconds).
jobs_tsv() {
    psql "$pg_url" -At -F $'\t' -c "select command, extract(epoch from queued_timestamp),
        extract(epoch from worker_start_timestamp), extract(epoch from worker_completed_timestamp)
        from jobs where worker_completed_timestamp is not null order by queued_timestamp"
}

# proc_cpu PID: the CPU time (user + system, seconds) a process has used so far.
proc_cpu() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }

# vmhwm PID: a process's peak RSS in MiB (VmHWM).
vmhwm() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

{
    echo "### Remote execution (issue 15)"
    machine_info
    echo "- cluster: BuildGrid $bg_version (\`bgd server\`, SQL scheduler on PostgreSQL $(psql --version | awk '{print $3}'), 0.1 s poll intervals, disk CAS), the Python worker of tests/remote_exec/cluster, all on this machine's 2 cores with taskrun"
    echo "- hyperfine $(hyperfine --version | cut -d' ' -f2), runs in ${ROUNDS:-3} rounds (bench/lib.sh \`hf\`)"
    echo
} >>"$out"

# ---- 1. overhead per cache-miss action, taskrun vs bgd execute --------------------------------
part1() {
    start_cluster "$MISS_BOTS"
    local d=$work/miss n=10 nh=5 i
    mkdir -p "$d/empty" "$d/bgd-out"
    {
        printf 'version = 1\n[pipeline]\nname = "bench-remote-miss"\nconcurrency = 1\n\n'
        printf '[execution]\nremote = "%s"\njobs = 1\n\n[vars]\nnonce = "0"\ntag = "tr"\n' "$grpc"
        for ((i = 0; i < n; i++)); do
            printf '\n[tasks.a%d]\noutputs = ["out/%d.txt"]\nrun = "echo ${vars.tag}-${vars.nonce}-%d > out/%d.txt"\n' $i $i $i $i
        done
    } >"$d/miss.toml"
    # One taskrun process per action, and one bgd process per action (each a fresh nonce).
    cat >"$d/tr-each.sh" <<EOF
#!/bin/sh
set -e
n=\$(date +%s%N)
for i in \$(seq 0 $((n - 1))); do
    "$TASKRUN" run "$d/miss.toml" a\$i --var nonce=\$n --var tag=tx -q --progress never -j1
done
EOF
    # The same, 1 s apart, as bgd's own start-up spaces its actions: whether BuildGrid's queueing
    # depends on how soon an action follows the last one (the bot just reported it).
    cat >"$d/tr-spaced.sh" <<EOF
#!/bin/sh
set -e
n=\$(date +%s%N)
for i in \$(seq 0 $((n - 1))); do
    sleep 1
    "$TASKRUN" run "$d/miss.toml" a\$i --var nonce=\$n --var tag=ts -q --progress never -j1
done
EOF
    cat >"$d/bgd-each.sh" <<EOF
#!/bin/sh
set -e
n=\$(date +%s%N)
for i in \$(seq 0 $((n - 1))); do
    "$BGD" execute --remote $http_url --instance-name "" command -c --output-file out/\$i.txt \\
        --output-directory "$d/bgd-out" "$d/empty" -- sh -c "echo bgd-\$n-\$i > out/\$i.txt" >/dev/null 2>&1
done
EOF
    cat >"$d/bgd-help.sh" <<EOF
#!/bin/sh
for i in \$(seq $nh); do "$BGD" --help >/dev/null; done
EOF
    cat >"$d/bgd-exec-help.sh" <<EOF
#!/bin/sh
for i in \$(seq $nh); do "$BGD" execute command --help >/dev/null; done
EOF
    chmod +x "$d"/*.sh
    cd "$d"
    # Warm the cluster (its first action is slower) and check both clients work.
    "$TASKRUN" run miss.toml --var nonce=warm --var tag=warm "${q[@]}" -j1 --report "$d/warm.json"
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; assert s["remote"]==s["total"]==10, s' "$d/warm.json"
    "$BGD" execute --remote "$http_url" --instance-name "" command -c --output-file out/w.txt \
        --output-directory "$d/bgd-out" "$d/empty" -- sh -c 'echo warm > out/w.txt' >"$d/bgd-warm.log" 2>&1
    [ "$(cat "$d/bgd-out/out/w.txt" 2>/dev/null || cat "$d/bgd-out/w.txt")" = warm ] || die "bgd execute brought no output: $(tail -5 "$d/bgd-warm.log")"
    hf remote-exec-miss "$RUNS_MISS" 0 \
        -n "taskrun: one run of $n tasks (-j1, jobs = 1)" "$TASKRUN run miss.toml --var nonce=\$(date +%s%N) -q --progress never -j1" \
        -n "taskrun: $n runs of one task" "$d/tr-each.sh" \
        -n "taskrun: $n runs of one task, 1 s apart" "$d/tr-spaced.sh" \
        -n "bgd execute: $n actions" "$d/bgd-each.sh" \
        -n "bgd --help: $nh runs" "$d/bgd-help.sh" \
        -n "bgd execute command --help: $nh runs" "$d/bgd-exec-help.sh"
    jobs_tsv >"$d/jobs.tsv"
    {
        echo "#### 1. Overhead per cache-miss action ($MISS_BOTS-bot cluster)"
        echo
        echo "$n distinct actions \`sh -c 'echo TAG-NONCE-N > out/N.txt'\` one after another, a fresh NONCE per run so that every one misses the ActionCache (both clients look it up first: taskrun by default, \`bgd execute command -c\`); bgd fetches the output into a directory as taskrun writes it into the workspace. Totals per run:"
        echo
        python3 "$BENCH_DIR/report.py" remote-exec-miss
        echo
        python3 - "$RESULTS" "$d/jobs.tsv" "$n" "$nh" <<'PY'
import glob, json, statistics as st, sys
results, jobs, n, nh = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
times = {}
for p in sorted(glob.glob(f"{results}/remote-exec-miss.r*.json")):
    for r in json.load(open(p))["results"]:
        times.setdefault(r["command"], []).extend(r["times"])
def per(name, k):
    for c, t in times.items():
        if c.startswith(name) and not c[len(name):].startswith(","):
            return st.median(t) / k
    return float("nan")
tr1, trn, bgd = per("taskrun: one run", n), per(f"taskrun: {n} runs of one task", n), per("bgd execute:", n)
trs = per(f"taskrun: {n} runs of one task, 1 s apart", n) - 1.0
h1, h2 = per("bgd --help", nh), per("bgd execute command --help", nh)
rows = {}
for line in open(jobs):
    cmd, q, a, c = line.rstrip("\n").split("\t")
    tag = next((t for t in ("echo tr-", "echo tx-", "echo ts-", "echo bgd-") if t in cmd), None)
    if tag and "-warm" not in cmd:
        rows.setdefault(tag, []).append((float(a) - float(q), float(c) - float(a), float(c) - float(q)))
def srv(tag, i):
    v = [r[i] for r in rows.get(tag, [])]
    return (st.mean(v) * 1000, len(v)) if v else (float("nan"), 0)
print("Per action (median run total / count) and BuildGrid's own view of the same actions (server clock, `jobs` table: queued -> assigned to the bot -> completed; means over every action of every run, to compare with the per-action figure, itself a mean within a run):")
print()
print("| client | per action, as the user waits | BuildGrid: queued | assigned -> completed (worker) | queued -> completed | client's own part (per action - queued -> completed) |")
print("|---|---:|---:|---:|---:|---:|")
for label, v, tag in ((f"taskrun, one run of {n} tasks", tr1, "echo tr-"), (f"taskrun, one process per task", trn, "echo tx-"),
                      ("taskrun, one process per task, 1 s apart (the pause not counted)", trs, "echo ts-"),
                      ("`bgd execute`, one process per action", bgd, "echo bgd-")):
    q, nq = srv(tag, 0)
    w, _ = srv(tag, 1)
    t, _ = srv(tag, 2)
    print(f"| {label} | **{v*1000:.0f} ms** | {q:.0f} ms | {w:.0f} ms | {t:.0f} ms | {v*1000 - t:.0f} ms ({nq} actions) |")
tb = srv("echo bgd-", 2)[0] / 1000
print(f"| `bgd execute` minus the start-up of `bgd --help` ({h1*1000:.0f} ms; it imports every subcommand's modules) | {(bgd - h1)*1000:.0f} ms | | | | {(bgd - h1 - tb)*1000:.0f} ms |")
print(f"| `bgd execute` minus the start-up of `bgd execute command --help` ({h2*1000:.0f} ms; the modules `execute` needs) | {(bgd - h2)*1000:.0f} ms | | | | {(bgd - h2 - tb)*1000:.0f} ms |")
print()
worst = max(tr1, trn)
print(f"Target (taskrun no slower than `bgd execute` per action): taskrun {tr1*1000:.0f} ms in one run, {trn*1000:.0f} ms one process per task, "
      f"{trs*1000:.0f} ms 1 s apart; bgd {bgd*1000:.0f} ms as a user sees it, {(bgd - h2)*1000:.0f} / {(bgd - h1)*1000:.0f} ms without its start-up. "
      f"As run: **{'met' if worst <= bgd else 'missed'}**. Against bgd minus `bgd execute command --help`: back to back {'met' if worst <= bgd - h2 else 'missed'}, "
      f"1 s apart like bgd's own actions {'met' if trs <= bgd - h2 else 'missed'}. Against bgd minus `bgd --help`: {'met' if min(tr1, trn, trs) <= bgd - h1 else 'missed'}.")
PY
        echo
    } >>"$out"
    cd "$work"
    stop_cluster
}

# ---- 2. 40 x sleep 1 on 8 bots ---------------------------------------------------------------
# RPCS: BuildGrid's limit on concurrent RPCs (its thread-pool-size, 40 in the test cluster's
# server.yml.in). Each action in flight holds one (its Execute or WaitExecution stream) and each
# idle bot one (its long poll): with `jobs` near the limit the bots are refused
# (RESOURCE_EXHAUSTED) and nothing runs. The measured runs use the default `jobs` (8 x the
# concurrency = 16 here); `jobs = 64` is then tried, bounded by a timeout, to record what happens.
part2() {
    local d=$work/sleep i k
    start_cluster 8
    mkdir -p "$d"
    {
        printf 'version = 1\n[pipeline]\nname = "bench-remote-sleep"\n\n'
        printf '[execution]\nremote = "%s"\n\n[vars]\nnonce = "0"\n' "$grpc"
        for ((i = 0; i < 40; i++)); do
            printf '\n[tasks.s%d]\noutputs = ["out/%d.txt"]\nrun = "mkdir -p out && sleep 1 && echo ${vars.nonce} > out/%d.txt"\n' $i $i $i
        done
    } >"$d/sleep.toml"
    sed 's/^remote = .*/&\njobs = 64/' "$d/sleep.toml" >"$d/sleep64.toml"
    cd "$d"
    "$TASKRUN" run sleep.toml --var nonce=warm "${q[@]}" --report "$d/warm.json"
    ROUNDS=2 hf remote-exec-sleep "$RUNS_SLEEP" 0 \
        -n "taskrun, 8 bots (default jobs: 16)" "$TASKRUN run sleep.toml --var nonce=\$(date +%s%N) -q --progress never" \
        -n "taskrun here, -j2 --remote-exec off" "$TASKRUN run sleep.toml --var nonce=\$(date +%s%N) -q --progress never -j2 --remote-exec off"
    jobs_tsv >"$d/jobs.tsv"
    # jobs = 64, at most 60 s a run (SIGTERM: taskrun cancels its operations), then a pause for
    # whatever was left queued to drain.
    local before after rc t0 wall tasks note probes=""
    for k in 1 2 3; do
        before=$(grep -c RESOURCE_EXHAUSTED "$cdir/worker.log" || true)
        t0=$(date +%s%N)
        rc=0
        TASKRUN_LOG=taskrun=info timeout 60 "$TASKRUN" run sleep64.toml --var nonce="$k$(date +%s%N)" "${q[@]}" --report "$d/j64-$k.json" \
            >"$d/j64-$k.log" 2>&1 || rc=$?
        wall=$(printf '%.2f' "$(echo "($(date +%s%N) - $t0) / 1000000000" | bc -l)")
        after=$(grep -c RESOURCE_EXHAUSTED "$cdir/worker.log" || true)
        tasks=$(python3 - "$d/j64-$k.json" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))["summary"]
    print(f"{s['remote']} ran remotely, {s['cached']} cached, {s['succeeded']} succeeded of {s['total']}")
except Exception:
    print("no report (killed)")
PY
)
        note=""
        ((rc == 124)) && note=" (timed out)"
        probes+=$(printf '| jobs = 64, run %s | %s s | %s%s | %s | %s | %s |' "$k" "$wall" "$rc" "$note" "$tasks" \
            "$((after - before))" "$(grep -c 'ResourceExhausted' "$d/j64-$k.log" || true)")$'\n'
        log "jobs = 64, run $k: exit $rc in $wall s"
        ((rc == 0)) || sleep 15
    done
    {
        echo "#### 2. 40 independent \`sleep 1\` tasks on 8 bots"
        echo
        echo "40 tasks \`mkdir -p out && sleep 1 && echo NONCE > out/N.txt\` (a fresh NONCE per run: all misses) with the default \`[execution] jobs\` (8 × the concurrency, 16 here); the ideal on 8 bots is 5 s. The same manifest run here with \`-j2 --remote-exec off\` for comparison (ideal 20 s). The warm-up run before: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["duration_ms"], "ms,", r["summary"])' "$d/warm.json")."
        echo
        python3 "$BENCH_DIR/report.py" remote-exec-sleep
        echo
        python3 - "$RESULTS" "$d/jobs.tsv" <<'PY'
import glob, json, re, statistics as st, sys
times = {}
for p in sorted(glob.glob(f"{sys.argv[1]}/remote-exec-sleep.r*.json")):
    for r in json.load(open(p))["results"]:
        times.setdefault(r["command"], []).extend(r["times"])
remote = st.median(next(t for c, t in times.items() if c.startswith("taskrun, 8 bots")))
runs = {}
for line in open(sys.argv[2]):
    cmd, q, a, c = line.rstrip("\n").split("\t")
    m = re.search(r"sleep 1 && echo (\d+) >", cmd)
    if m:
        runs.setdefault(m.group(1), []).append((float(q), float(a), float(c)))
full = [v for v in runs.values() if len(v) == 40]
spans = [max(c for _, _, c in v) - min(q for q, _, _ in v) for v in full]
waits = [a - q for v in full for q, a, _ in v]
if spans:
    print(f"BuildGrid's view ({len(spans)} measured runs): first action queued -> last completed **{st.median(spans):.2f} s** (median); "
          f"time in the queue per action median {st.median(waits):.2f} s, max {max(waits):.2f} s (with 16 in flight on 8 bots, 8 wait by design).")
    print()
print(f"Target (<= 1.5 x the ideal 5 s = 7.5 s): taskrun {remote:.2f} s = {remote/5:.2f} x the ideal: **{'met' if remote <= 7.5 else 'missed'}**.")
PY
        echo
        echo "The same 40 tasks with \`[execution] jobs = 64\` (each run bounded by \`timeout 60\`): BuildGrid allows 40 concurrent RPCs (its thread pool); each waiting bot holds one, and so does each action waiting on a stream: at most \`[execution] streams\` (default 8) do, the others are polled (before that bound, 64 actions took every thread and nothing ran)."
        echo
        echo "| run | wall | exit | tasks | bot calls refused (RESOURCE_EXHAUSTED, worker log) | taskrun calls refused (ResourceExhausted, its log at info) |"
        echo "|---|---:|---:|---|---:|---:|"
        printf '%s' "$probes"
        echo
    } >>"$out"
    cd "$work"
}

# ---- 3. 1,000 cached actions: the cluster's ActionCache vs the HTTP remote cache ---------------
part3() {
    local d=$work/cached kind m t0
    [ -n "$cpid" ] || start_cluster 8
    start_dav "$d"
    npid=$DAV_PID
    python3 "$BENCH_DIR/gen.py" cache "$d/src" --tasks "$CACHED_TASKS" >/dev/null
    for kind in rx http; do
        for m in a b; do
            mkdir -p "$d/$kind-$m/out"
            cp -r "$d/src/in" "$d/src/cache.toml" "$d/$kind-$m/"
            if [ $kind = rx ]; then
                printf '\n[execution]\nremote = "%s"\n' "$grpc" >>"$d/$kind-$m/cache.toml"
            else
                printf '\n[cache]\nremote = "http://127.0.0.1:%s"\nremote_write = true\n' "$DAV_PORT" >>"$d/$kind-$m/cache.toml"
            fi
        done
    done
    t0=$(date +%s%N)
    (cd "$d/rx-a" && "$TASKRUN" run cache.toml "${q[@]}" --report "$d/rx-a.json")
    local fill_rx=$((($(date +%s%N) - t0) / 1000000))
    t0=$(date +%s%N)
    (cd "$d/http-a" && "$TASKRUN" run cache.toml "${q[@]}" --report "$d/http-a.json")
    local fill_http=$((($(date +%s%N) - t0) / 1000000))
    log "workspace A: $CACHED_TASKS tasks on the cluster in $fill_rx ms; here with HTTP uploads in $fill_http ms"
    local rx_remote
    rx_remote=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["remote"])' "$d/rx-a.json")
    # Check once that B is served by the remote, every task.
    for kind in rx http; do
        (cd "$d/$kind-b" && "$TASKRUN" run cache.toml "${q[@]}" --report "$d/$kind-b.json")
        python3 - "$d/$kind-b.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["summary"]
src = {t["cache_source"] for t in r["tasks"]}
if s["cached"] != s["total"] or src != {"remote"}:
    sys.exit(f"{sys.argv[1]}: not every task came from the remote: {s} {src}")
PY
    done
    hf remote-exec-cached "$RUNS_CACHED" 1 --prepare "rm -rf $d/rx-b/.taskrun $d/rx-b/out $d/http-b/.taskrun $d/http-b/out && mkdir $d/rx-b/out $d/http-b/out" \
        -n "taskrun, served by BuildGrid's ActionCache ([execution] remote)" "cd $d/rx-b && $TASKRUN run cache.toml -q --progress never" \
        -n "taskrun, served by nginx WebDAV ([cache] remote = http://...)" "cd $d/http-b && $TASKRUN run cache.toml -q --progress never" \
        -n "taskrun, running the commands here (--no-cache --remote-exec off)" "cd $d/http-b && $TASKRUN run cache.toml -q --progress never --no-cache --remote-exec off"
    # Where B's time goes: one more run served by BuildGrid, with the CPU time its server used
    # (less what it uses idle, its scheduler and the 8 bots' polls, measured just before).
    local c0 c1 c2 c3 t0 t1 t2 srv_cpu tr_cpu
    c0=$(proc_cpu "$spid")
    t0=$(date +%s%N)
    sleep 5
    c1=$(proc_cpu "$spid")
    t1=$(date +%s%N)
    rm -rf "$d/rx-b/.taskrun" "$d/rx-b/out" && mkdir "$d/rx-b/out"
    cd "$d/rx-b"
    c2=$(proc_cpu "$spid")
    t2=$(date +%s%N)
    /usr/bin/time -o "$d/hit.time" -f '%e %U %S' "$TASKRUN" run cache.toml "${q[@]}" >/dev/null 2>&1
    tr_cpu=$(tail -1 "$d/hit.time")
    c3=$(proc_cpu "$spid")
    srv_cpu=$(python3 -c '
import sys
c0, c1, c2, c3, t0, t1, t2 = map(float, sys.argv[1:8])
idle = (c1 - c0) / ((t1 - t0) / 1e9)
wall, user, sys_ = map(float, sys.argv[8].split())
print(f"wall {wall:.2f} s, taskrun CPU {user + sys_:.2f} s; BuildGrid server CPU {c3 - c2:.2f} s, of which {c3 - c2 - idle * wall:.2f} s above its idle rate ({idle:.2f} CPU-s/s)")'         "$c0" "$c1" "$c2" "$c3" "$t0" "$t1" "$t2" "$tr_cpu")
    cd "$work"
    {
        echo "#### 3. $CACHED_TASKS small cached actions"
        echo
        echo "Workspace A ran the $CACHED_TASKS tasks \`cp in/N.txt out/N.txt\` (bench/gen.py cache) on the 8-bot cluster with the default \`[execution] jobs\` (16) ($rx_remote ran remotely), filling its ActionCache: **$fill_rx ms** (one run). The same tasks run here uploading to nginx WebDAV (\`remote_write\`): $fill_http ms."
        echo
        echo "Workspace B (a copy of the sources, no \`.taskrun\`, no outputs; prepare: \`rm -rf .taskrun out && mkdir out\`), every task a remote hit:"
        echo
        python3 "$BENCH_DIR/report.py" remote-exec-cached
        echo
        echo "One more run served by BuildGrid, under GNU time, with the server's CPU time (/proc): $srv_cpu."
        echo
    } >>"$out"
    kill "$npid" 2>/dev/null || true
    wait "$npid" 2>/dev/null || true
    npid=
}

# ---- 4. memory with 1 GiB of inputs ----------------------------------------------------------
part4() {
    local d=$work/big i
    [ -n "$cpid" ] || start_cluster 8
    mkdir -p "$d/in"
    log "8 x 128 MiB of random inputs in $d/in"
    for i in 0 1 2 3 4 5 6 7; do head -c 134217728 /dev/urandom >"$d/in/$i.bin"; done
    printf 'version = 1\n[pipeline]\nname = "bench-remote-big"\n\n[execution]\nremote = "%s"\n\n[vars]\nnonce = "0"\n\n[tasks.count]\ninputs = ["in/*.bin"]\noutputs = ["out/n.txt"]\nrun = ": ${vars.nonce}; cat in/*.bin | wc -c > out/n.txt"\n' \
        "$grpc" >"$d/big.toml"
    local cas_before cas_after df_before df_after
    cas_before=$(du -sm "$cdir/cas" | cut -f1)
    df_before=$(df -m --output=avail "$cdir" | tail -1 | tr -d ' ')
    cd "$d"
    rm -f "$RESULTS/rss.tsv"
    local t0 w1 w2
    t0=$(date +%s%N)
    peak_rss "first run: 1 GiB of inputs uploaded" "$TASKRUN" run big.toml --var nonce=1 "${q[@]}" --report "$d/r1.json"
    w1=$((($(date +%s%N) - t0) / 1000000))
    t0=$(date +%s%N)
    peak_rss "second action over the same inputs (already in the CAS)" "$TASKRUN" run big.toml --var nonce=2 "${q[@]}" --report "$d/r2.json"
    w2=$((($(date +%s%N) - t0) / 1000000))
    cas_after=$(du -sm "$cdir/cas" | cut -f1)
    df_after=$(df -m --output=avail "$cdir" | tail -1 | tr -d ' ')
    local n ok r
    n=$(cat "$d/out/n.txt" 2>/dev/null || echo "?")
    ok=$(python3 -c 'import json,sys; print(all(json.load(open(p))["summary"]["remote"] == 1 for p in sys.argv[1:]))' "$d/r1.json" "$d/r2.json")
    {
        echo "#### 4. Peak RSS with 1 GiB of inputs"
        echo
        echo "One remote task, \`inputs = [\"in/*.bin\"]\`: 8 random files of 128 MiB on tmpfs; \`cat in/*.bin | wc -c > out/n.txt\` (the worker counted $n bytes; both runs remote: $ok). taskrun's peak RSS by GNU time:"
        echo
        echo "| run | wall | taskrun peak RSS | exit |"
        echo "|---|---:|---:|---:|"
        local w=("$w1" "$w2") k=0 label kib rc
        while IFS=$'\t' read -r label kib rc; do
            printf '| %s | %.2f s | **%.1f MiB** | %s |\n' "$label" "$(echo "${w[$k]}/1000" | bc -l)" "$(echo "$kib/1024" | bc -l)" "$rc"
            k=$((k + 1))
        done <"$RESULTS/rss.tsv"
        echo
        echo "The cluster's disk CAS ($cdir/cas, on $(df --output=source "$cdir" | tail -1)): $cas_before MiB before, $cas_after MiB after; free space on that disk $df_before -> $df_after MiB. Peak RSS of BuildGrid's server $(vmhwm "$spid") MiB and of the worker (8 bots) $(vmhwm "$wpid") MiB over the whole bench (VmHWM)."
        echo
        r=$(sort -t$'\t' -k2 -n "$RESULTS/rss.tsv" | tail -1 | cut -f2)
        echo "Target (memory flat, tens of MiB, not ~1 GiB): largest $(echo "$r/1024" | bc) MiB: **$( ((r < 100 * 1024)) && echo met || echo missed)**."
        echo
    } >>"$out"
    cd "$work"
    rm -rf "$d/in"
}

for p in $PARTS; do "part$p"; done
stop_cluster
cat "$out"
