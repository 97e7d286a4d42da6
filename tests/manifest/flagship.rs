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
    run_manifest(dir, &["download.toml"], port)
}

fn run_manifest(dir: &Path, args: &[&str], port: u16) -> (i32, serde_json::Value, String) {
    let out = crate::workspace::taskrun()
        .current_dir(dir)
        .args(args)
        .args(["--report", "report.json"])
        .env("TASKRUN_DEMO_PORT", port.to_string())
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
        "fetch[2024-01]",
        "fetch[2024-02]",
        "fetch[2024-03]",
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
        "fetch[2024-01]",
        "fetch[2024-02]",
        "fetch[2024-03]",
        "summary",
    ] {
        assert_eq!(status(&report, t), "cached", "{t}");
    }
    assert_eq!(report["summary"]["bytes_downloaded"], 0);
}

/// `pipelines/urls.toml`, the list form: every URL of `urls.txt` fetched and verified against
/// the committed `urls.lock` (`--locked`), each file cleaned by its paired instance; a rerun
/// is all cached. The committed files name port 8765; the copy is moved to a free port.
#[test]
fn the_list_pipeline_runs_locked_offline_then_is_all_cached() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"),
        tmp.path(),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for file in ["urls.txt", "urls.lock"] {
        let path = tmp.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("127.0.0.1:8765/"), "{file}");
        std::fs::write(
            &path,
            text.replace("127.0.0.1:8765/", &format!("127.0.0.1:{port}/")),
        )
        .unwrap();
    }
    let lock_before = std::fs::read_to_string(tmp.path().join("urls.lock")).unwrap();
    let var = format!("port={port}");
    let args = ["urls.toml", "--locked", "--var", &var];

    let (code, report, text) = run_manifest(tmp.path(), &args, port);
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["summary"]["total"], 26, "{text}");
    assert_eq!(report["summary"]["succeeded"], 26, "{text}");
    let get = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "get[temps-2023-07.csv]")
        .unwrap();
    assert_eq!(get["task"], "get");
    assert_eq!(get["item"]["name"], "temps-2023-07.csv");
    let summary = std::fs::read_to_string(tmp.path().join("out/urls-summary.csv")).unwrap();
    assert_eq!(
        summary.lines().count(),
        1 + 12 * 5,
        "twelve months, five stations"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("urls.lock")).unwrap(),
        lock_before,
        "--locked never writes the lockfile"
    );

    let (code, report, text) = run_manifest(tmp.path(), &args, port);
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["summary"]["cached"], 26, "{text}");
    assert_eq!(report["summary"]["bytes_downloaded"], 0);
}
