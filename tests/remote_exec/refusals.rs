//! What the cluster refuses (SPEC §11): a request it will never take (a platform property
//! it does not know) fails the task at once with the server's words, rather than passing for
//! an unreachable cluster that is retried and then quietly left for a local run.

use crate::cluster::Cluster;
use crate::support::{Workspace, manifest, nonce, task};

/// BuildGrid answers FAILED_PRECONDITION ("Unregistered platform property") without the
/// MISSING violations that would mean lost inputs: a configuration problem, not retried,
/// no local fallback, no warning.
#[test]
fn an_unknown_platform_property_fails_the_task_at_once() {
    let Some(c) = Cluster::shared() else { return };
    let body = "[tasks.p]\nplatform = { bogus = \"1\" }\noutputs = [\"p.txt\"]\n\
                run = \"echo p > p.txt\"\n";
    let ws = Workspace::new(&manifest(c.url(), "", &nonce(), body));
    let run = ws.run(&[]);
    run.code(1);
    assert!(!run.stdout.contains("warning:"), "{}", run.stdout);
    assert!(!run.stdout.contains("unreachable"), "{}", run.stdout);
    let report = ws.last_report();
    let p = task(&report, "p");
    assert_eq!(p["status"], "failed", "{p:#}");
    let error = p["error"].as_str().unwrap();
    assert!(error.contains("Unregistered platform property"), "{error}");
    assert!(!error.contains("missing inputs"), "{error}");
    assert!(!ws.path("p.txt").exists(), "it ran here");
}

/// An action the cluster refuses outright never ran there: the task is not reported as
/// executed remotely (`executed_on` null, not counted in "ran remotely"). BuildGrid here
/// refuses an Action timeout over 600 s with INVALID_ARGUMENT; and the unknown property
/// above is refused the same way.
#[test]
fn an_action_the_cluster_refuses_is_not_reported_as_run_there() {
    let Some(c) = Cluster::shared() else { return };
    let body = "[tasks.long]\ntimeout = \"15m\"\noutputs = [\"l.txt\"]\nrun = \"echo l > l.txt\"\n\
                [tasks.p]\nplatform = { bogus = \"1\" }\noutputs = [\"p.txt\"]\n\
                run = \"echo p > p.txt\"\n";
    let ws = Workspace::new(&manifest(c.url(), "", &nonce(), body));
    let run = ws.run(&["-k"]);
    run.code(1);
    assert!(!run.stdout.contains("ran remotely"), "{}", run.stdout);
    let report = ws.last_report();
    for name in ["long", "p"] {
        let t = task(&report, name);
        assert_eq!(t["status"], "failed", "{t:#}");
        assert!(t["executed_on"].is_null(), "{name}: {t:#}");
    }
    let error = task(&report, "long")["error"].as_str().unwrap().to_string();
    assert!(error.contains("InvalidArgument"), "{error}");
    assert_eq!(report["summary"]["remote"], 0, "{report:#}");
}
