use std::path::Path;
use std::time::Duration;

use super::*;
use crate::cache::testutil::{command, download, pipeline, with_io};
use crate::model::{CommandLine, RelPath};
use crate::template::Segment;

const A: Digest = [1; 32];
const B: Digest = [2; 32];

fn key_of(t: &Task, inputs: &[(String, Digest)], deps: &[(String, Digest)]) -> Digest {
    let p = pipeline(Path::new("/w"), vec![t.clone()]);
    task_key(&p, t, inputs, deps).key
}

fn base() -> Task {
    with_io(
        command("merge", "cat a b > out/m"),
        &["data/*"],
        &["out/m"],
        &[],
    )
}

fn inputs() -> Vec<(String, Digest)> {
    vec![("data/a.csv".into(), A), ("data/b.csv".into(), B)]
}

fn k(t: &Task) -> Digest {
    key_of(t, &inputs(), &[("fetch".into(), A)])
}

#[test]
fn every_ingredient_changes_the_key() {
    let base_key = k(&base());
    let mut changed = Vec::new();

    let mut t = base();
    t.action = Action::Command(CommandLine::Shell(Template::literal("cat b a > out/m")));
    changed.push(("command", k(&t)));

    let mut t = base();
    t.action = Action::Command(CommandLine::Argv(vec![Template::literal(
        "cat a b > out/m",
    )]));
    changed.push(("argv vs shell", k(&t)));

    let mut t = base();
    t.cwd = Some(RelPath::parse("sub").unwrap());
    changed.push(("cwd", k(&t)));

    let mut t = base();
    t.env.insert("LC_ALL".into(), Template::literal("C"));
    changed.push(("env added", k(&t)));

    let mut t = base();
    t.outputs.push(RelPath::parse("out/n").unwrap());
    changed.push(("outputs", k(&t)));

    changed.push((
        "input content",
        key_of(
            &base(),
            &[("data/a.csv".into(), A), ("data/b.csv".into(), A)],
            &[("fetch".into(), A)],
        ),
    ));
    changed.push((
        "input removed",
        key_of(&base(), &[("data/a.csv".into(), A)], &[("fetch".into(), A)]),
    ));
    changed.push((
        "input renamed",
        key_of(
            &base(),
            &[("data/a.csv".into(), A), ("data/c.csv".into(), B)],
            &[("fetch".into(), A)],
        ),
    ));
    changed.push((
        "dep digest",
        key_of(&base(), &inputs(), &[("fetch".into(), B)]),
    ));
    changed.push((
        "dep added",
        key_of(&base(), &inputs(), &[("fetch".into(), A), ("g".into(), B)]),
    ));

    let mut t = base();
    t.cache_ttl = None;
    assert_eq!(k(&t), base_key);
    for (what, key) in &changed {
        assert_ne!(*key, base_key, "{what} must change the key");
    }
    let mut all: Vec<Digest> = changed.iter().map(|c| c.1).collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        changed.len(),
        "every change gives a distinct key"
    );
}

#[test]
fn env_value_and_pipeline_env_change_the_key() {
    let mut t = base();
    t.env.insert("X".into(), Template::literal("1"));
    let k1 = k(&t);
    t.env.insert("X".into(), Template::literal("2"));
    assert_ne!(k1, k(&t));

    let mut p = pipeline(Path::new("/w"), vec![base()]);
    let k0 = task_key(&p, &base(), &[], &[]).key;
    p.env.insert("LC_ALL".into(), Template::literal("C"));
    assert_ne!(k0, task_key(&p, &base(), &[], &[]).key);
}

#[test]
fn non_ingredients_leave_the_key_alone() {
    let base_key = k(&base());
    let mut t = base();
    t.name = "other-name".into();
    t.description = Some("words".into());
    t.retry.max_attempts = 7;
    t.retry.initial_delay = Duration::from_secs(9);
    t.timeout = Some(Duration::from_secs(3));
    t.uses.insert("net".into(), 2);
    t.keep_failed_outputs = true;
    assert_eq!(k(&t), base_key);
    // The dependency's name is not an ingredient, only its digest.
    assert_eq!(
        key_of(&base(), &inputs(), &[("renamed".into(), A)]),
        base_key
    );
    // Input order does not matter.
    let mut rev = inputs();
    rev.reverse();
    assert_eq!(key_of(&base(), &rev, &[("fetch".into(), A)]), base_key);
}

#[test]
fn secrets_enter_by_name_and_secret_headers_not_at_all() {
    let mut t = download("get", "http://h/a", "data/a", Some(&"ab".repeat(32)));
    let k0 = k(&t);
    if let Action::Download(d) = &mut t.action {
        d.headers.insert(
            "Authorization".into(),
            Template::from_segments([
                Segment::Literal("Bearer ".into()),
                Segment::Secret("TOKEN".into()),
            ]),
        );
    }
    assert_eq!(k(&t), k0, "a header holding a secret is left out");
    if let Action::Download(d) = &mut t.action {
        d.headers
            .insert("Accept".into(), Template::literal("text/csv"));
    }
    assert_ne!(k(&t), k0, "a plain header is an ingredient");

    // A secret in a command enters as its name; its value is never seen.
    let mut c = base();
    c.env.insert(
        "TOKEN".into(),
        Template::from_segments([Segment::Secret("TOKEN".into())]),
    );
    let parts = task_key(&pipeline(Path::new("/w"), vec![c.clone()]), &c, &[], &[]).parts;
    assert!(parts.iter().any(|p| p.name == "env TOKEN"));
}

#[test]
fn download_url_and_pin_change_the_key() {
    let t = download("get", "http://h/a", "data/a", None);
    let k0 = k(&t);
    assert_ne!(k(&download("get", "http://h/b", "data/a", None)), k0);
    assert_ne!(
        k(&download(
            "get",
            "http://h/a",
            "data/a",
            Some(&"ab".repeat(32))
        )),
        k0
    );
    assert_ne!(k(&download("get", "http://h/a", "data/b", None)), k0);
}

#[test]
fn outputs_digest_depends_on_content_path_and_exec_bit_only() {
    let f = |path: &str, d, mode| OutputEntry {
        path: path.into(),
        sha256: d,
        mode,
    };
    let d0 = outputs_digest(&[f("a", A, 0o644), f("b", B, 0o644)]);
    assert_eq!(outputs_digest(&[f("b", B, 0o600), f("a", A, 0o664)]), d0);
    assert_ne!(outputs_digest(&[f("a", A, 0o755), f("b", B, 0o644)]), d0);
    assert_ne!(outputs_digest(&[f("a", B, 0o644), f("b", A, 0o644)]), d0);
    assert_ne!(outputs_digest(&[f("a", A, 0o644), f("c", B, 0o644)]), d0);
}

#[test]
fn dependency_digest_per_kind() {
    let p = pipeline(Path::new("/w"), vec![]);
    let mut group = command("g", "");
    group.action = Action::Group;
    assert_eq!(
        dependency_digest(&p, &group, None, &[A, B], &[]),
        group_digest(&[B, A])
    );
    let no_out = command("c", "true");
    assert_eq!(dependency_digest(&p, &no_out, Some(&B), &[], &[]), B);
    let with_out = with_io(command("c", "true"), &[], &["o"], &[]);
    let files = [OutputEntry {
        path: "o".into(),
        sha256: A,
        mode: 0o644,
    }];
    assert_eq!(
        dependency_digest(&p, &with_out, Some(&B), &[], &files),
        outputs_digest(&files)
    );
}

#[test]
fn a_platform_enters_the_key_and_its_absence_adds_no_part() {
    let plain = base();
    let parts = |t: &Task| {
        let p = pipeline(Path::new("/w"), vec![t.clone()]);
        task_key(&p, t, &inputs(), &[]).parts.len()
    };
    let mut image = base();
    image
        .platform
        .insert("container-image".into(), "docker://python:3.12".into());
    let mut other = image.clone();
    other
        .platform
        .insert("container-image".into(), "docker://python:3.13".into());
    assert_ne!(k(&plain), k(&image));
    assert_ne!(k(&image), k(&other));
    assert_eq!(parts(&image), parts(&plain) + 1);
}
