//! The checked-in JSON Schemas are current, and the shipped manifests and plan output obey them.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Compares a generated schema with its checked-in copy; `UPDATE_SCHEMAS=1` rewrites it.
fn check_fresh(file: &str, generated: &str) {
    let path = root().join("schema").join(file);
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "schema/{file} is stale: run `UPDATE_SCHEMAS=1 cargo test --test manifest schema` and commit it"
    );
}

#[test]
fn manifest_schema_is_fresh() {
    check_fresh(
        "taskrun.schema.json",
        &taskrun::manifest::schema::manifest_schema_json(),
    );
}

#[test]
fn plan_schema_is_fresh() {
    check_fresh("plan.schema.json", &taskrun::plan::json::plan_schema_json());
}

fn validator(file: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schema").join(file)).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn shipped_pipelines_follow_the_manifest_schema() {
    let v = validator("taskrun.schema.json");
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("pipelines")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("#:schema ../schema/taskrun.schema.json"),
            "{} lacks the #:schema line",
            p.display()
        );
        let value: toml::Value = toml::from_str(&text).unwrap();
        let json = serde_json::to_value(value).unwrap();
        assert_valid(&v, &json, &p.display().to_string());
        n += 1;
    }
    assert!(n >= 3);
}

#[test]
fn schema_rejects_what_the_loader_rejects() {
    let v = validator("taskrun.schema.json");
    let bad = serde_json::json!({"tasks": {"a": {"run": "x", "retries": 3}}});
    assert!(!v.is_valid(&bad));
    let good = serde_json::json!({"tasks": {"a": {"run": ["x", "y"], "retry": 3}, "b": {"retry": {"max_attempts": 2}}}});
    assert!(
        v.is_valid(&good),
        "{:?}",
        v.iter_errors(&good)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    );
}

/// `json` follows the schema of `v`; else the failure lists every error, for `what`.
fn assert_valid(v: &jsonschema::Validator, json: &serde_json::Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(json)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:?}");
}

/// `taskrun plan MANIFEST --format json` in `dir` (with `TASKRUN_REMOTE_EXECUTOR` set to
/// `executor`), which must succeed, parsed.
fn plan_json(dir: &Path, manifest: &str, executor: &str) -> serde_json::Value {
    let out = crate::support::taskrun()
        .current_dir(dir)
        .args(["plan", manifest, "--format", "json"])
        .env("TASKRUN_REMOTE_EXECUTOR", executor)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn plan_json_follows_the_plan_schema() {
    let v = validator("plan.schema.json");
    let manifests = ["download.toml", "urls.toml", "data.toml", "ci.toml"];
    // With a remote executor too: then every task says where it would run.
    for (manifest, executor) in manifests.iter().map(|m| (*m, "")).chain([
        ("ci.toml", "grpc://127.0.0.1:1"),
        ("download.toml", "grpcs://rbe"),
    ]) {
        let json = plan_json(&root().join("pipelines"), manifest, executor);
        assert_eq!(json["format_version"], 1);
        let placed = json["tasks"][0].get("executed_on").is_some();
        assert_eq!(placed, !executor.is_empty(), "{manifest} {executor}");
        assert_valid(&v, &json, manifest);
    }
}

/// A fan-out expanded after its producer (SPEC §9): its stand-in's plan entry (kind of its
/// instances, `expanded_after`, the `expand` action) follows the plan schema.
#[test]
fn a_stand_in_in_the_plan_follows_the_plan_schema() {
    let v = validator("plan.schema.json");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("taskrun.toml"),
        "[tasks.unpack]\noutputs = [\"unpacked\"]\nrun = \"true\"\n\n[tasks.clean]\ndeps = [\"unpack\"]\nfor_each = { glob = \"unpacked/*.csv\" }\nrun = \"cat ${item.path}\"\n",
    )
    .unwrap();
    let json = plan_json(dir.path(), "taskrun.toml", "");
    let stand_in = &json["tasks"][1];
    assert_eq!(stand_in["name"], "clean[*]");
    assert_eq!(stand_in["action"]["type"], "expand");
    assert_eq!(stand_in["action"]["items"], "glob unpacked/*.csv");
    assert_valid(&v, &json, "the stand-in's plan");
}
