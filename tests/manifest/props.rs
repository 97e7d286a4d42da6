//! The loader never panics, whatever it is fed, and every problem it reports has a place in
//! the manifest (issue 14 item 12): random bytes, mangled real manifests, random task tables,
//! and fan-out item files (`lines`, `csv`) of random bytes or `glob`s over random file names.
//!
//! CI runs a few hundred cases per property. A longer run (recorded in RELIABILITY.md):
//!
//! ```text
//! TASKRUN_FUZZ_CASES=20000 cargo test --release --test manifest props
//! ```

use std::path::Path;

use proptest::prelude::*;
use taskrun::manifest::{LoadError, LoadOptions, load_str};

#[path = "fuzz.rs"]
mod fuzz;

/// Cases per property: `TASKRUN_FUZZ_CASES`, else `ci`.
pub fn cases(ci: u32) -> ProptestConfig {
    let n = std::env::var("TASKRUN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci);
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn load(text: String) {
    load_at(Path::new("fuzz.toml"), text);
}

/// Loads `text` as the manifest at `path`; every problem must point into the text and
/// render with `path:line:col`.
pub fn load_at(path: &Path, text: String) {
    let env = |k: &str| (k == "HOME").then(|| "/home/x".to_string());
    let len = text.len();
    match load_str(path, text, &LoadOptions::default(), &env) {
        Ok(_) => {}
        Err(LoadError::Invalid(errors)) => {
            assert!(!errors.problems.is_empty(), "an error without a problem");
            for p in &errors.problems {
                let span = p.span.as_ref();
                assert!(
                    span.is_some_and(|s| s.start <= s.end && s.end <= len),
                    "problem without a place in the manifest: {:?} at {span:?} (len {len})",
                    p.message
                );
            }
            let shown = format!("{}:", path.display());
            let placed = errors
                .short()
                .lines()
                .filter(|l| l.starts_with(&shown))
                .count();
            assert!(placed >= errors.problems.len(), "{}", errors.short());
            assert!(!errors.render(false).is_empty());
        }
        Err(other) => panic!("unexpected load error: {}", other.render(false)),
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("run".to_string()),
        Just("deps".to_string()),
        Just("download".to_string()),
        Just("service".to_string()),
        Just("retry".to_string()),
        Just("outputs".to_string()),
        Just("inputs".to_string()),
        Just("uses".to_string()),
        Just("timeout".to_string()),
        Just("url".to_string()),
        Just("dest".to_string()),
        Just("sha256".to_string()),
        Just("max_attempts".to_string()),
        Just("ready".to_string()),
        "[a-z_]{1,8}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "\"[ -~]{0,12}\"".prop_map(|s| s),
        "\"[^\"\\\\\u{0}-\u{1f}]{0,12}\"".prop_map(|s| s),
        Just("\"${vars.x}\"".to_string()),
        Just("\"${env.HOME}\"".to_string()),
        Just("\"${secret.T}\"".to_string()),
        Just("\"../up\"".to_string()),
        Just("\"1s\"".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("1.5".to_string()),
        Just("[\"a\", \"b\"]".to_string()),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((key(), inner), 0..4).prop_map(|kv| {
                let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", body.join(", "))
            }),
        ]
    })
}

pub fn manifest() -> impl Strategy<Value = String> {
    let task = (
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("d")],
        prop::collection::vec((key(), value()), 0..6),
    );
    prop::collection::vec(task, 0..5).prop_map(|tasks| {
        let mut s = String::from("[vars]\nx = \"1\"\n[pools]\nnet = 2\n");
        let mut seen = std::collections::HashSet::new();
        for (name, fields) in tasks {
            if !seen.insert(name) {
                continue;
            }
            s.push_str(&format!("[tasks.{name}]\n"));
            let mut keys = std::collections::HashSet::new();
            for (k, v) in fields {
                if keys.insert(k.clone()) {
                    s.push_str(&format!("{k} = {v}\n"));
                }
            }
        }
        s
    })
}

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        load(String::from_utf8_lossy(&bytes).into_owned());
    }

    #[test]
    fn arbitrary_valid_toml_never_panics(text in manifest()) {
        load(text);
    }

    #[test]
    fn any_string_in_every_interpolated_field_never_panics(s in "\\PC{0,24}") {
        let q = toml::Value::String(s).to_string();
        load(format!(
            "[vars]\nx = {q}\n[env]\nE = {q}\n[tasks.a]\nrun = {q}\ncwd = {q}\ninputs = [{q}]\noutputs = [{q}]\n\
             [tasks.b]\ndownload = {{ url = {q}, dest = {q}, headers = {{ H = {q} }} }}\n"
        ));
    }
}
