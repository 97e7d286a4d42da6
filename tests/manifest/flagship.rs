//! `pipelines/download.toml`, the README's first command, works offline and caches on rerun.

use std::path::Path;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let e = entry.unwrap();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.')
            || ["data", "out", "downloads", "build", "dist"].contains(&name.as_ref())
        {
            continue;
        }
        let target = to.join(&*name);
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn run(dir: &Path, port: u16) -> (i32, serde_json::Value, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_taskrun"))
        .current_dir(dir)
        .args(["download.toml", "--report", "report.json"])
        .env("TASKRUN_DEMO_PORT", port.to_string())
        .env("CI", "true")
        .env_remove("TASKRUN_CACHE_DIR")
        .env_remove("TASKRUN_REMOTE_CACHE")
        .output()
        .unwrap();
    let report = serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), report, text)
}

fn status<'a>(report: &'a serde_json::Value, task: &str) -> &'a str {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == task)
        .unwrap()["status"]
        .as_str()
        .unwrap()
}

#[test]
fn flagship_pipeline_runs_offline_then_is_all_cached() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"),
        tmp.path(),
    );
    // The mirror service binds this port itself; a free one is picked by the OS first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let (code, report, text) = run(tmp.path(), port);
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["status"], "succeeded");
    for t in [
        "fetch-stations",
        "fetch-jan",
        "fetch-feb",
        "fetch-mar",
        "summary",
    ] {
        assert_eq!(status(&report, t), "succeeded", "{t}");
    }
    let summary = std::fs::read_to_string(tmp.path().join("out/summary.csv")).unwrap();
    assert!(
        summary.starts_with("station,month,mean_temp_c,lat,lon\n"),
        "{summary}"
    );
    assert_eq!(
        summary.lines().count(),
        1 + 5 * 3,
        "five stations, three months"
    );
    assert!(text.contains("downloaded"), "{text}");

    let (code, report, text) = run(tmp.path(), port);
    assert_eq!(code, 0, "{text}");
    for t in [
        "mirror",
        "fetch-stations",
        "fetch-jan",
        "fetch-feb",
        "fetch-mar",
        "summary",
    ] {
        assert_eq!(status(&report, t), "cached", "{t}");
    }
    assert_eq!(report["summary"]["bytes_downloaded"], 0);
}
