use super::*;
use crate::model::TaskKind;
use crate::report::fixture::{at, attempt, cmd, run, task};
use crate::report::{AttemptOutcome, PoolReport, TaskStatus};
use serde_json::Value;

/// The rules of the Trace Event format that a loader enforces: a `traceEvents` array of
/// objects, known phases, integer pid/tid, µs timestamps, `dur` on complete events, numeric
/// counter values, begin/end pairs matched per thread, metadata naming every used track.
pub fn check_trace(v: &Value) -> Result<(), String> {
    let events = v["traceEvents"].as_array().ok_or("no traceEvents array")?;
    let mut named = std::collections::HashSet::new();
    let mut used = std::collections::HashSet::new();
    let mut open: std::collections::HashMap<(u64, u64), Vec<String>> = Default::default();
    for e in events {
        let ph = e["ph"].as_str().ok_or(format!("no ph: {e}"))?;
        let pid = e["pid"]
            .as_u64()
            .ok_or(format!("pid not an integer: {e}"))?;
        let tid = e["tid"]
            .as_u64()
            .ok_or(format!("tid not an integer: {e}"))?;
        e["name"].as_str().ok_or(format!("no name: {e}"))?;
        if ph != "M" {
            e["ts"].as_u64().ok_or(format!("ts not integer µs: {e}"))?;
        }
        match ph {
            "X" => {
                e["dur"].as_u64().ok_or(format!("X without dur: {e}"))?;
                used.insert((pid, tid));
            }
            "B" => open
                .entry((pid, tid))
                .or_default()
                .push(e["name"].to_string()),
            "E" => {
                open.get_mut(&(pid, tid))
                    .and_then(Vec::pop)
                    .ok_or(format!("E without B: {e}"))?;
            }
            "C" => {
                let args = e["args"]
                    .as_object()
                    .ok_or(format!("C without args: {e}"))?;
                if args.is_empty() || !args.values().all(Value::is_number) {
                    return Err(format!("C args not numbers: {e}"));
                }
            }
            "i" | "I" => {
                if !matches!(e["s"].as_str(), Some("t" | "p" | "g")) {
                    return Err(format!("instant without scope: {e}"));
                }
            }
            "M" => {
                let n = e["name"].as_str().unwrap_or("");
                if ![
                    "process_name",
                    "thread_name",
                    "thread_sort_index",
                    "process_sort_index",
                ]
                .contains(&n)
                {
                    return Err(format!("unknown metadata {n}"));
                }
                if n == "thread_name" {
                    e["args"]["name"]
                        .as_str()
                        .ok_or(format!("unnamed track: {e}"))?;
                    named.insert((pid, tid));
                }
            }
            other => return Err(format!("unexpected phase {other}")),
        }
    }
    if let Some((k, _)) = open.iter().find(|(_, v)| !v.is_empty()) {
        return Err(format!("unclosed B on {k:?}"));
    }
    if let Some(t) = used.difference(&named).next() {
        return Err(format!("track {t:?} has no thread_name"));
    }
    Ok(())
}

fn sample() -> crate::report::RunReport {
    let mut flaky = cmd("flaky", 0, 500, &[]);
    flaky.cache_key = Some("ab".into());
    flaky.attempts = vec![
        attempt(1, 10, 100, AttemptOutcome::Failed, Some(300)),
        attempt(2, 400, 480, AttemptOutcome::Succeeded, None),
    ];
    let mut hit = cmd("built", 0, 20, &[]);
    hit.status = TaskStatus::Cached;
    hit.cache_hit = true;
    hit.attempts.clear();
    let mut db = task("db", TaskKind::Service, 0, 900, &[]);
    db.ready_at = Some(at(200));
    let mut get = task("get \"x\"", TaskKind::Download, 100, 300, &[]);
    get.bytes = Some(1 << 20);
    get.uses.insert("net".into(), 1);
    let mut r = run(
        900,
        vec![flaky, hit, db, get, cmd("test", 500, 800, &["db", "flaky"])],
    );
    r.pools.push(PoolReport {
        name: "net".into(),
        size: 2,
    });
    r
}

#[test]
fn the_trace_follows_the_format() {
    let text = to_string(&sample());
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    check_trace(&v).unwrap();
    let events = v["traceEvents"].as_array().unwrap();
    let x = |cat: &str| {
        events
            .iter()
            .filter(|e| e["ph"] == "X" && e["cat"] == cat)
            .count()
    };
    // flaky's 2 attempts, db's 1, get's 1, test's 1.
    assert_eq!(x("attempt"), 5);
    // flaky's lookup and store, built's restore.
    assert_eq!(x("cache"), 3);
    // A retry wait holds no slot: a mark where it begins, not a bar on the track.
    assert_eq!(x("wait"), 0);
    let wait = events.iter().find(|e| e["cat"] == "wait").unwrap();
    assert_eq!(
        (wait["ph"].as_str(), wait["ts"].as_u64()),
        (Some("i"), Some(100_000))
    );
    assert!(
        wait["name"]
            .as_str()
            .unwrap()
            .ends_with("(retry in 300 ms: exit code 1)"),
        "{wait}"
    );
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .filter_map(|e| e["args"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&"slot 1") && names.contains(&"download lane 1"),
        "{names:?}"
    );
    for counter in ["running tasks", "bytes/s", "pool net"] {
        assert!(
            events
                .iter()
                .any(|e| e["ph"] == "C" && e["name"] == counter),
            "{counter}"
        );
    }
}

/// The mark says the backoff chosen (the report's `wait_ms`); a retry that started later
/// waited for a slot, and says so, rather than passing the whole gap off as backoff.
#[test]
fn a_retry_that_waited_for_a_slot_says_both_waits() {
    let mut r = sample();
    r.tasks[0].attempts[1] = attempt(2, 688, 750, AttemptOutcome::Succeeded, None);
    let v: Value = serde_json::from_str(&to_string(&r)).unwrap();
    let events = v["traceEvents"].as_array().unwrap();
    let wait = events.iter().find(|e| e["cat"] == "wait").unwrap();
    assert!(
        wait["name"].as_str().unwrap().ends_with(
            "(retry in 300 ms: exit code 1; started 588 ms later, when a slot was free)"
        ),
        "{wait}"
    );
}

#[test]
fn the_checker_refuses_broken_traces() {
    let bad = |s: &str| check_trace(&serde_json::from_str(s).unwrap()).is_err();
    assert!(bad(
        r#"{"traceEvents":[{"ph":"X","name":"a","pid":1,"tid":1.5,"ts":0,"dur":1}]}"#
    ));
    assert!(bad(
        r#"{"traceEvents":[{"ph":"B","name":"a","pid":1,"tid":1,"ts":0}]}"#
    ));
    assert!(bad(
        r#"{"traceEvents":[{"ph":"X","name":"a","pid":1,"tid":1,"ts":0,"dur":1}]}"#
    ));
    assert!(bad(
        r#"{"traceEvents":[{"ph":"Q","name":"a","pid":1,"tid":1,"ts":0}]}"#
    ));
}
