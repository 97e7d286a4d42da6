//! Run-loop tests on pipelines built in code, running real `sh` processes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{RunOptions, run};
use crate::cache::NoCache;
use crate::events::{Event, Recorder};
use crate::model::{
    Action, CacheConfig, CachePolicy, CommandLine, HttpConfig, Pipeline, RetryPolicy, Task,
    TaskKind,
};
use crate::plan::Plan;
use crate::report::{AttemptOutcome, RunStatus, TaskStatus};
use crate::template::Template;

fn task(name: &str, deps: &[&str], action: Action) -> Task {
    Task {
        name: name.into(),
        description: None,
        deps: deps.iter().map(|s| s.to_string()).collect(),
        retry: RetryPolicy::default_for(action.kind()),
        action,
        cwd: None,
        env: BTreeMap::new(),
        inputs: vec![],
        outputs: vec![],
        timeout: None,
        uses: BTreeMap::new(),
        cache: CachePolicy::Auto,
        keep_failed_outputs: false,
        cache_ttl: None,
        origin: None,
        expands: None,
        order_only: 0,
        remote: true,
        platform: BTreeMap::new(),
    }
}

fn sh(name: &str, deps: &[&str], script: &str) -> Task {
    task(
        name,
        deps,
        Action::Command(CommandLine::Shell(Template::literal(script))),
    )
}

fn pipeline(root: &Path, concurrency: usize, tasks: Vec<Task>) -> Pipeline {
    Pipeline {
        manifest_path: root.join("taskrun.toml"),
        root: root.to_path_buf(),
        name: "test".into(),
        description: None,
        concurrency,
        fail_fast: true,
        env: BTreeMap::new(),
        pools: BTreeMap::new(),
        cache: CacheConfig {
            dir: root.join(".taskrun/cache"),
            remote: None,
            remote_write: false,
            instance: String::new(),
            headers: BTreeMap::new(),
        },
        http: HttpConfig::default(),
        execution: Default::default(),
        tasks: tasks
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect::<crate::model::TaskMap>(),
        dep_indices: None,
        fanouts: Vec::new(),
        item_sources: Vec::new(),
    }
}

fn opts() -> RunOptions {
    RunOptions {
        run_id: "20260101T000000Z-0000".into(),
        jobs: None,
        keep_going: false,
        log_dir: None,
        handle_signals: false,
        replay_cached_output: false,
        placements: None,
        force: false,
        earlier: None,
        interrupted_before: None,
    }
}

async fn go(p: Pipeline, o: RunOptions) -> (super::RunResult, Vec<Event>) {
    let plan = Arc::new(Plan::build(p, &[]).unwrap());
    let mut rec = Recorder::default();
    let res = run(plan, Arc::new(NoCache), o, &mut rec).await;
    let events = rec.events.lock().unwrap().clone();
    (res, events)
}

fn status(res: &super::RunResult, name: &str) -> TaskStatus {
    res.report
        .tasks
        .iter()
        .find(|t| t.name == name)
        .unwrap()
        .status
}

#[tokio::test]
async fn deps_run_first_and_groups_complete() {
    let d = tempfile::tempdir().unwrap();
    let p = pipeline(
        d.path(),
        4,
        vec![
            sh("a", &[], "echo a >> order"),
            sh("b", &["a"], "echo b >> order"),
            task("all", &["b"], Action::Group),
        ],
    );
    let (res, events) = go(p, opts()).await;
    assert_eq!(res.exit_code, 0);
    assert_eq!(res.report.status, RunStatus::Succeeded);
    assert_eq!(
        std::fs::read_to_string(d.path().join("order")).unwrap(),
        "a\nb\n"
    );
    assert_eq!(status(&res, "all"), TaskStatus::Succeeded);
    assert_eq!(res.report.summary.succeeded, 3);
    assert!(matches!(events.last(), Some(Event::RunFinished { .. })));
}

#[tokio::test]
async fn fail_fast_skips_downstream_and_cancels_the_rest() {
    let d = tempfile::tempdir().unwrap();
    let p = pipeline(
        d.path(),
        1,
        vec![
            sh("bad", &[], "echo oops; exit 3"),
            sh("after-bad", &["bad"], "true"),
            sh("other", &[], "true"),
        ],
    );
    let (res, events) = go(p, opts()).await;
    assert_eq!(res.exit_code, 1);
    assert_eq!(status(&res, "bad"), TaskStatus::Failed);
    assert_eq!(status(&res, "after-bad"), TaskStatus::Skipped);
    assert_eq!(status(&res, "other"), TaskStatus::Cancelled);
    let bad = &res.report.tasks[0];
    assert_eq!(bad.exit_code, Some(3));
    assert_eq!(bad.error.as_deref(), Some("exit code 3"));
    let finished = events.iter().find_map(|e| match e {
        Event::TaskFinished { task, last_lines } if task.name == "bad" => Some(last_lines.clone()),
        _ => None,
    });
    assert_eq!(finished.unwrap(), vec!["oops".to_string()]);
}

#[tokio::test]
async fn keep_going_runs_everything_not_downstream() {
    let d = tempfile::tempdir().unwrap();
    let p = pipeline(
        d.path(),
        1,
        vec![
            sh("bad", &[], "exit 1"),
            sh("after-bad", &["bad"], "true"),
            sh("other", &[], "true"),
        ],
    );
    let (res, _) = go(
        p,
        RunOptions {
            keep_going: true,
            ..opts()
        },
    )
    .await;
    assert_eq!(res.exit_code, 1);
    assert_eq!(status(&res, "after-bad"), TaskStatus::Skipped);
    assert_eq!(status(&res, "other"), TaskStatus::Succeeded);
}

#[tokio::test]
async fn retries_until_success_and_reports_every_attempt() {
    let d = tempfile::tempdir().unwrap();
    let mut t = sh(
        "flaky",
        &[],
        "n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; [ $n -ge 3 ]",
    );
    t.retry = RetryPolicy {
        max_attempts: 5,
        initial_delay: Duration::from_millis(10),
        jitter: crate::model::Jitter::None,
        ..RetryPolicy::default_for(TaskKind::Command)
    };
    let (res, events) = go(pipeline(d.path(), 2, vec![t]), opts()).await;
    assert_eq!(res.exit_code, 0);
    let r = &res.report.tasks[0];
    let outcomes: Vec<_> = r.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            AttemptOutcome::Failed,
            AttemptOutcome::Failed,
            AttemptOutcome::Succeeded
        ]
    );
    let waits: Vec<_> = r.attempts.iter().map(|a| a.wait_ms).collect();
    assert_eq!(waits, vec![Some(10), Some(20), None]);
    let retries = events
        .iter()
        .filter(|e| matches!(e, Event::RetryScheduled { .. }))
        .count();
    assert_eq!(retries, 2);
}

#[tokio::test]
async fn timeout_kills_the_group_and_counts_as_an_attempt() {
    let d = tempfile::tempdir().unwrap();
    let mut t = sh("slow", &[], "sleep 30 & echo $! > child.pid; wait");
    t.timeout = Some(Duration::from_millis(300));
    let (res, _) = go(pipeline(d.path(), 2, vec![t]), opts()).await;
    assert_eq!(res.exit_code, 1);
    let r = &res.report.tasks[0];
    assert_eq!(r.attempts[0].outcome, AttemptOutcome::TimedOut);
    assert!(r.error.as_deref().unwrap().contains("timed out"), "{r:?}");
    let pid: i32 = std::fs::read_to_string(d.path().join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(dies_soon(pid), "grandchild {pid} survived the timeout");
}

#[tokio::test]
async fn failed_command_outputs_are_deleted_unless_kept() {
    let d = tempfile::tempdir().unwrap();
    let mut t = sh("w", &[], "echo partial > out.txt; exit 1");
    t.outputs = vec![crate::model::RelPath::parse("out.txt").unwrap()];
    let mut k = sh("k", &[], "echo partial > kept.txt; exit 1");
    k.outputs = vec![crate::model::RelPath::parse("kept.txt").unwrap()];
    k.keep_failed_outputs = true;
    let (res, _) = go(
        pipeline(d.path(), 2, vec![t, k]),
        RunOptions {
            keep_going: true,
            ..opts()
        },
    )
    .await;
    assert_eq!(res.exit_code, 1);
    assert!(!d.path().join("out.txt").exists());
    assert!(d.path().join("kept.txt").exists());
}

#[tokio::test]
async fn missing_input_fails_the_task_before_it_runs() {
    let d = tempfile::tempdir().unwrap();
    let mut t = sh("needs", &[], "touch ran");
    t.inputs = vec![crate::model::InputPattern {
        glob: "data/*.csv".into(),
        optional: false,
    }];
    let (res, _) = go(pipeline(d.path(), 2, vec![t]), opts()).await;
    assert_eq!(res.exit_code, 1);
    assert!(
        res.report.tasks[0]
            .error
            .as_deref()
            .unwrap()
            .contains("data/*.csv")
    );
    assert!(!d.path().join("ran").exists());
}

#[tokio::test]
async fn missing_secret_fails_with_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let t = task(
        "s",
        &[],
        Action::Command(CommandLine::Shell(Template::from_segments([
            crate::template::Segment::Literal("echo ".into()),
            crate::template::Segment::Secret("TASKRUN_TEST_UNSET_SECRET".into()),
        ]))),
    );
    let (res, _) = go(pipeline(d.path(), 2, vec![t]), opts()).await;
    let err = res.report.tasks[0].error.clone().unwrap();
    assert!(err.contains("TASKRUN_TEST_UNSET_SECRET"), "{err}");
}

#[tokio::test]
async fn a_download_to_a_closed_port_fails_after_its_attempts() {
    let d = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut t = task(
        "dl",
        &[],
        Action::Download(crate::model::Download {
            urls: vec![Template::literal(format!("http://127.0.0.1:{port}/x"))],
            dest: crate::model::RelPath::parse("x").unwrap(),
            sha256: None,
            pin_source: Default::default(),
            headers: BTreeMap::new(),
            max_bytes: None,
            resume: true,
            revalidate: false,
        }),
    );
    t.retry.max_attempts = 2;
    t.retry.initial_delay = Duration::from_millis(1);
    let (res, _) = go(pipeline(d.path(), 2, vec![t]), opts()).await;
    let task = &res.report.tasks[0];
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.attempts.len(), 2, "a connection error is retried");
    assert!(!d.path().join("x").exists(), "nothing at dest");
}

/// Whether `pid` is a live process (a zombie waiting for its reaper counts as dead).
pub(crate) fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only probes for existence.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// SIGKILL is delivered asynchronously: give the kernel a moment to finish the process.
pub(crate) fn dies_soon(pid: i32) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Serves `body` to every request on a loopback listener (one connection at a time).
fn serve(body: Vec<u8>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    port
}

fn download_from(port: u16, name: &str) -> Task {
    task(
        name,
        &[],
        Action::Download(crate::model::Download {
            urls: vec![Template::literal(format!("http://127.0.0.1:{port}/{name}"))],
            dest: crate::model::RelPath::parse(&format!("out/{name}")).unwrap(),
            sha256: None,
            pin_source: Default::default(),
            headers: BTreeMap::new(),
            max_bytes: None,
            resume: true,
            revalidate: false,
        }),
    )
}

/// Records events like [`Recorder`] but, like the plain and quiet consoles, shows no
/// download progress.
struct NoProgress(Recorder);

impl crate::events::Sink for NoProgress {
    fn event(&mut self, event: &Event) {
        self.0.event(event);
    }
}

#[tokio::test]
async fn download_progress_is_sent_only_when_a_sink_shows_it() {
    let port = serve(vec![42u8; 300 * 1024]);
    let d = tempfile::tempdir().unwrap();
    let tasks = || {
        (0..4)
            .map(|i| download_from(port, &format!("f{i}")))
            .collect()
    };
    let progress = |events: &[Event]| {
        events
            .iter()
            .filter(|e| matches!(e, Event::DownloadProgress { .. }))
            .count()
    };

    let (res, events) = go(pipeline(d.path(), 4, tasks()), opts()).await;
    assert_eq!(res.exit_code, 0, "{:?}", res.report.tasks);
    assert!(progress(&events) >= 4, "a sink that shows progress gets it");

    let plan = Arc::new(Plan::build(pipeline(d.path(), 4, tasks()), &[]).unwrap());
    let mut quiet = NoProgress(Recorder::default());
    let res = run(plan, Arc::new(NoCache), opts(), &mut quiet).await;
    assert_eq!(res.exit_code, 0, "{:?}", res.report.tasks);
    let events = quiet.0.events.lock().unwrap().clone();
    assert_eq!(progress(&events), 0, "no sink shows progress: none is sent");
    for i in 0..4 {
        let len = std::fs::metadata(d.path().join(format!("out/f{i}")))
            .unwrap()
            .len();
        assert_eq!(len, 300 * 1024, "f{i} complete");
    }
}

/// A command that fails at once without a process (its program does not exist), so a test
/// on paused time has nothing to wait for while it fails.
fn fails_at_once(name: &str) -> Task {
    let missing = Template::literal("/nonexistent/taskrun-test-program");
    task(name, &[], Action::Command(CommandLine::Argv(vec![missing])))
}

/// A command that fails, then waits `wait` (no jitter) before each of its 3 attempts.
fn retried(name: &str, script: &str, wait: Duration) -> Task {
    let mut t = sh(name, &[], script);
    t.retry = RetryPolicy {
        max_attempts: 3,
        initial_delay: wait,
        jitter: crate::model::Jitter::None,
        ..RetryPolicy::default_for(TaskKind::Command)
    };
    t
}

/// Checks that `name` was cancelled for fail-fast's sake after one real attempt, claiming
/// neither that it never started nor a wait before an attempt that never came.
#[track_caller]
fn cancelled_before_its_next_attempt(res: &super::RunResult, name: &str) {
    let t = res.report.tasks.iter().find(|t| t.name == name).unwrap();
    assert_eq!(t.status, TaskStatus::Cancelled, "{t:?}");
    let error = t.error.as_deref().unwrap_or_default();
    assert!(!error.contains("not started"), "{error}");
    assert!(error.contains("fail-fast") && error.contains("before its next attempt"));
    assert_eq!(t.attempts.len(), 1, "{t:?}");
    assert_eq!(t.attempts[0].wait_ms, None, "no wait happened: {t:?}");
}

/// SPEC §3/§8: a task waiting to retry holds nothing, and no attempt starts once a failure
/// stopped the run: it is cancelled then, not once its wait is over.
#[tokio::test(start_paused = true)]
async fn fail_fast_cancels_a_task_waiting_to_retry_at_once() {
    let d = tempfile::tempdir().unwrap();
    // One slot: `a-flaky` fails and waits, then `b-bad` fails for good.
    let tasks = vec![
        retried("a-flaky", "exit 1", Duration::from_secs(60)),
        fails_at_once("b-bad"),
    ];
    let start = tokio::time::Instant::now();
    let (res, events) = go(pipeline(d.path(), 1, tasks), opts()).await;
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "the wait was sat out"
    );
    assert_eq!(res.exit_code, 1);
    assert_eq!(status(&res, "b-bad"), TaskStatus::Failed);
    cancelled_before_its_next_attempt(&res, "a-flaky");
    let retries = events
        .iter()
        .filter(|e| matches!(e, Event::RetryScheduled { .. }))
        .count();
    assert_eq!(retries, 1, "the wait it was in when the run stopped");
}

/// An attempt that fails after fail-fast stopped the run is not retried: no retry is
/// announced, none is waited for.
#[tokio::test(start_paused = true)]
async fn an_attempt_failing_after_fail_fast_is_not_retried() {
    let d = tempfile::tempdir().unwrap();
    let tasks = vec![
        retried("late", "sleep 0.5; exit 1", Duration::from_secs(60)),
        fails_at_once("bad"),
    ];
    let start = tokio::time::Instant::now();
    let (res, events) = go(pipeline(d.path(), 2, tasks), opts()).await;
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "a wait was sat out"
    );
    assert_eq!(status(&res, "bad"), TaskStatus::Failed);
    cancelled_before_its_next_attempt(&res, "late");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::RetryScheduled { .. })),
        "a retry that will not happen was announced"
    );
}
