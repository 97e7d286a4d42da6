use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;
use crate::cache::predict::{CacheView, PredictOptions, PredictedStatus, predict};
use crate::cache::testutil::{command, plan, with_io};

/// Plays the scheduler: lookup, "run" with `work` on a miss, record_success.
fn step(
    cache: &LocalCache,
    p: &Plan,
    i: usize,
    deps: &[Digest],
    work: impl FnOnce(),
) -> (bool, Digest) {
    let inputs = crate::cache::inputs::expand_with(
        &p.pipeline.root,
        &p.pipeline.cache.dir,
        &p.task(i).inputs,
        std::iter::empty(),
    )
    .unwrap()
    .into_inputs();
    match cache.lookup(p, i, &inputs, deps).unwrap() {
        Lookup::Hit { digest, .. } => (true, digest),
        Lookup::Run { key, .. } => {
            work();
            (
                false,
                cache
                    .record_success(
                        p,
                        i,
                        key.as_deref(),
                        deps,
                        Produced {
                            output: b"log line\n",
                            ..Produced::default()
                        },
                    )
                    .unwrap(),
            )
        }
    }
}

fn write(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn two_tasks(root: &Path) -> Plan {
    plan(
        root,
        vec![
            with_io(
                command("gen", "gen"),
                &["src/*.txt"],
                &["mid/out.txt", "mid/bin"],
                &[],
            ),
            with_io(
                command("use", "use"),
                &["mid/out.txt"],
                &["final.txt"],
                &["gen"],
            ),
        ],
    )
}

fn gen_outputs(root: &Path, content: &str) {
    write(root, "mid/out.txt", content);
    write(root, "mid/bin/tool", "#!/bin/sh\n");
    fs::set_permissions(root.join("mid/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn second_run_hits_and_restores_outputs_with_exec_bit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "src/a.txt", "a");
    let p = two_tasks(root);
    let cache = LocalCache::open(&p.pipeline, CacheOptions::default()).unwrap();
    let (hit, d0) = step(&cache, &p, 0, &[], || gen_outputs(root, "v1"));
    assert!(!hit);
    let (hit, _) = step(&cache, &p, 1, &[d0], || write(root, "final.txt", "f"));
    assert!(!hit);
    cache.finish(false).unwrap();

    fs::remove_dir_all(root.join("mid")).unwrap();
    write(root, "final.txt", "tampered");
    let (hit, d1) = step(&cache, &p, 0, &[], || panic!("must not run"));
    assert!(hit);
    assert_eq!(d0, d1);
    assert_eq!(fs::read_to_string(root.join("mid/out.txt")).unwrap(), "v1");
    let mode = fs::metadata(root.join("mid/bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "executable bit restored");
    let (hit, _) = step(&cache, &p, 1, &[d1], || panic!("must not run"));
    assert!(hit);
    assert_eq!(fs::read_to_string(root.join("final.txt")).unwrap(), "f");
}

#[test]
fn early_cutoff_identical_outputs_keep_dependents_cached() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "src/a.txt", "a");
    let p = two_tasks(root);
    let cache = LocalCache::open(&p.pipeline, CacheOptions::default()).unwrap();
    let (_, d0) = step(&cache, &p, 0, &[], || gen_outputs(root, "same"));
    step(&cache, &p, 1, &[d0], || write(root, "final.txt", "f"));
    // An input change (a comment, say) reruns gen, which writes identical bytes.
    write(root, "src/b.txt", "new input");
    let (hit, d1) = step(&cache, &p, 0, &[], || gen_outputs(root, "same"));
    assert!(!hit);
    assert_eq!(d0, d1);
    let (hit, _) = step(&cache, &p, 1, &[d1], || panic!("must not run"));
    assert!(hit);
}

#[test]
fn force_runs_but_stores_and_ttl_expires() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut t = with_io(command("t", "t"), &[], &["o"], &[]);
    t.cache_ttl = Some(Duration::from_secs(3600));
    let p = plan(root, vec![t]);
    {
        let forced = LocalCache::open(
            &p.pipeline,
            CacheOptions {
                force: true,
                ..CacheOptions::default()
            },
        )
        .unwrap();
        match forced.lookup(&p, 0, &[], &[]).unwrap() {
            Lookup::Run { reason, key } => {
                assert_eq!(reason, Reason::Force);
                write(root, "o", "x");
                forced
                    .record_success(&p, 0, key.as_deref(), &[], Produced::default())
                    .unwrap();
            }
            other => panic!("{other:?}"),
        }
    }
    let cache = LocalCache::open(&p.pipeline, CacheOptions::default()).unwrap();
    let Lookup::Hit { key, .. } = cache.lookup(&p, 0, &[], &[]).unwrap() else {
        panic!("stored under --force")
    };
    // Age the entry past its ttl.
    let mut rec = cache.store().read_record(&key).unwrap();
    rec.created = "2000-01-01T00:00:00Z".into();
    cache.store().write_record(&mut rec).unwrap();
    match cache.lookup(&p, 0, &[], &[]).unwrap() {
        Lookup::Run { reason, .. } => {
            assert_eq!(reason, Reason::Expired(Duration::from_secs(3600)));
            assert_eq!(reason.to_string(), "expired (cache_ttl 1h)");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn corrupt_blob_is_a_miss_never_a_wrong_output() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let p = plan(root, vec![with_io(command("t", "t"), &[], &["o"], &[])]);
    let cache = LocalCache::open(&p.pipeline, CacheOptions::default()).unwrap();
    step(&cache, &p, 0, &[], || write(root, "o", "good"));
    let d = crate::cache::digest::hash_bytes(b"good");
    fs::write(cache.store().blob_path(&d), "evil").unwrap();
    fs::remove_file(root.join("o")).unwrap();
    match cache.lookup(&p, 0, &[], &[]).unwrap() {
        Lookup::Run { reason, .. } => assert!(reason.to_string().contains("corrupt"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(!root.join("o").exists());
}

#[test]
fn failed_task_leaves_no_entry_and_missing_output_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let p = plan(root, vec![with_io(command("t", "t"), &[], &["o"], &[])]);
    let cache = LocalCache::open(&p.pipeline, CacheOptions::default()).unwrap();
    let Lookup::Run { key, .. } = cache.lookup(&p, 0, &[], &[]).unwrap() else {
        panic!()
    };
    // The task "failed": the scheduler does not call record_success.
    assert!(cache.store().record_files().is_empty());
    let err = cache
        .record_success(&p, 0, key.as_deref(), &[], Produced::default())
        .unwrap_err();
    assert!(
        matches!(&err, CacheError::Outputs(m) if m.contains("declared output o was not created")),
        "{err}"
    );
    assert!(cache.store().record_files().is_empty());
}

#[test]
fn predictions_give_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "src/a.txt", "a");
    let mut tasks = vec![
        with_io(
            command("gen", "gen"),
            &["src/*.txt"],
            &["mid/out.txt", "mid/bin"],
            &[],
        ),
        with_io(
            command("use", "use"),
            &["mid/out.txt"],
            &["final.txt"],
            &["gen"],
        ),
        command("echo", "echo hi"),
    ];
    let p = plan(root, tasks.clone());
    let ro = |p: &Plan| predict(p, &CacheView::open(&p.pipeline), PredictOptions::default());
    let pr = ro(&p);
    assert_eq!(
        (pr[0].status, pr[0].reason.clone()),
        (PredictedStatus::Miss, Some(Reason::NoEntry))
    );
    assert_eq!(
        said(&pr[1].reason).as_deref(),
        Some("dependency gen will run")
    );
    assert_eq!(
        (pr[2].status, said(&pr[2].reason).as_deref()),
        (
            PredictedStatus::Off,
            Some(crate::plan::predict::off_reason(&p.pipeline.tasks[2]))
        )
    );
    assert!(!p.pipeline.cache.dir.exists(), "plan writes nothing");

    {
        let cache = LocalCache::open(&p.pipeline, CacheOptions::default()).unwrap();
        let (_, d0) = step(&cache, &p, 0, &[], || gen_outputs(root, "v1"));
        step(&cache, &p, 1, &[d0], || write(root, "final.txt", "f"));
    }
    let pr = ro(&p);
    assert_eq!(
        (pr[0].status, pr[1].status),
        (PredictedStatus::Hit, PredictedStatus::Hit)
    );
    assert_eq!(pr[0].reason, None);

    fs::remove_file(root.join("mid/out.txt")).unwrap();
    let pr = ro(&p);
    assert_eq!(
        said(&pr[0].reason).as_deref(),
        Some("output mid/out.txt missing: restore")
    );
    assert_eq!(
        pr[1].status,
        PredictedStatus::Hit,
        "its input will be restored"
    );

    write(root, "src/a.txt", "changed");
    write(root, "src/c.txt", "added");
    let pr = ro(&p);
    assert_eq!(
        pr[0].reason,
        Some(Reason::Changed(
            "input src/a.txt changed, input src/c.txt added".into()
        ))
    );

    write(root, "src/a.txt", "a");
    fs::remove_file(root.join("src/c.txt")).unwrap();
    tasks[0].action = Action::Command(crate::model::CommandLine::Shell(
        crate::template::Template::literal("gen2"),
    ));
    let pr = ro(&plan(root, tasks));
    assert_eq!(said(&pr[0].reason).as_deref(), Some("command changed"));
}

#[test]
fn journal_stands_for_an_unchanged_record_and_a_corrupted_one_is_still_caught() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let p = plan(root, vec![with_io(command("t", "t"), &[], &["o"], &[])]);
    let cache = LocalCache::open(&p.pipeline, CacheOptions::default()).unwrap();
    step(&cache, &p, 0, &[], || write(root, "o", "good"));
    let key = cache.journal().last_key("t").unwrap();
    let record = cache.store().record_path(&key);
    // Just written: racy, so the journal does not vouch for it yet.
    assert!(
        cache
            .journal()
            .record("t", &key, || cache.store().record_stat(&key))
            .is_none()
    );

    // Once the record is safely older than its stamp, a hit re-stamps it and from then on
    // the journal answers without reading the record.
    let f = fs::File::options().write(true).open(&record).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    assert!(matches!(
        cache.lookup(&p, 0, &[], &[]).unwrap(),
        Lookup::Hit { .. }
    ));
    assert!(
        cache
            .journal()
            .record("t", &key, || cache.store().record_stat(&key))
            .is_some()
    );
    assert!(matches!(
        cache.lookup(&p, 0, &[], &[]).unwrap(),
        Lookup::Hit { .. }
    ));

    // A record damaged in place no longer matches its stamp: it is read, found corrupt,
    // deleted, and the task runs.
    fs::write(&record, "{\"damaged\": true}").unwrap();
    assert!(matches!(
        cache.lookup(&p, 0, &[], &[]).unwrap(),
        Lookup::Run { .. }
    ));
    assert!(!record.exists());
}

#[test]
fn a_prefetch_overtaken_by_another_run_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let p = plan(root, vec![with_io(command("t", "t"), &[], &["o"], &[])]);
    let cache_dir = p.pipeline.cache.dir.clone();
    let prefetch = Prefetch::start(cache_dir.clone(), p.pipeline.manifest_path.clone()).unwrap();
    // Another run stores an entry (and saves its journal) while the prefetch reads.
    {
        let other = LocalCache::open(&p.pipeline, CacheOptions::default()).unwrap();
        step(&other, &p, 0, &[], || write(root, "o", "x"));
        other.finish(false).unwrap();
    }
    let cache =
        LocalCache::open_with(&p.pipeline, CacheOptions::default(), Some(prefetch)).unwrap();
    assert!(cache.journal().last_key("t").is_some());
    assert!(cache.journal().is_current() && cache.stats().is_current());

    // A prefetch of another cache dir is not used.
    let elsewhere = Prefetch::start(root.join("elsewhere"), p.pipeline.manifest_path.clone());
    drop(cache);
    let cache = LocalCache::open_with(&p.pipeline, CacheOptions::default(), elsewhere).unwrap();
    assert!(cache.journal().last_key("t").is_some());
}

/// Only a task that is never cached and has no inputs is looked up inline: the rest may
/// read files (inputs, records, the remote).
#[test]
fn only_uncached_tasks_without_inputs_are_looked_up_without_io() {
    let d = tempfile::tempdir().unwrap();
    let p = plan(
        d.path(),
        vec![
            command("plain", "true"),
            with_io(command("reads", "true"), &["src/*.txt"], &[], &[]),
            with_io(command("writes", "true"), &[], &["out.txt"], &[]),
        ],
    );
    let cache = LocalCache::open(&p.pipeline, CacheOptions::default()).unwrap();
    let needs_io = |i: usize| cache.lookup_needs_io(p.task(i));
    assert!(!needs_io(0), "no outputs, no inputs: key only");
    assert!(needs_io(1), "inputs are hashed");
    assert!(needs_io(2), "outputs make it cached");
    assert!(!crate::cache::NoCache.lookup_needs_io(p.task(0)));
    assert!(crate::cache::NoCache.lookup_needs_io(p.task(1)));
}

/// A prediction's reason in the words `plan` shows.
fn said(reason: &Option<Reason>) -> Option<String> {
    reason.as_ref().map(Reason::to_string)
}
