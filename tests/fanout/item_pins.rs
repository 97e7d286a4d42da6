//! Pins that come from items (SPEC §9's `get-pinned`, §10 "an inline `sha256` (also from an
//! item field) always wins"): `sha256 = "${item.sha256}"` is interpolated like any string of
//! `download`, verified while streaming, and needs no lockfile.

use crate::bytes::sha;
use crate::fault_server::Route;
use crate::served::Http;
use crate::support::{Workspace, entry};

/// One download per row of `sources.csv` (columns id, url, sha256), pinned by its row.
const PINNED: &str = r#"
[tasks.get-pinned]
for_each = { csv = "sources.csv" }
key = "${item.id}"
download = { url = "${item.url}", dest = "raw/${item.id}.csv", sha256 = "${item.sha256}" }
retry = 1
"#;

fn sources(http: &Http, rows: &[(&str, &str, String)]) -> String {
    let mut csv = String::from("id,url,sha256\n");
    for (id, path, pin) in rows {
        csv.push_str(&format!("{id},{},{pin}\n", http.url(path)));
    }
    csv
}

#[test]
fn a_pin_from_a_csv_column_is_verified_and_needs_no_lockfile() {
    let http = Http::start();
    http.route("/a.csv", Route::ok("alpha\n"));
    http.route("/b.csv", Route::ok("tampered\n"));
    let ws = Workspace::new(PINNED);
    ws.write(
        "sources.csv",
        &sources(
            &http,
            &[
                ("a", "/a.csv", sha(b"alpha\n")),
                ("b", "/b.csv", sha(b"beta\n")),
            ],
        ),
    );
    ws.check().code(0);
    // Every download is pinned inline: `--locked` needs no lockfile.
    ws.exec(&["check", "taskrun.toml", "--locked"]).code(0);

    let (_, report) = ws.run_report(&["-k"], 1);
    assert_eq!(entry(&report, "get-pinned[a]")["status"], "succeeded");
    let b = entry(&report, "get-pinned[b]");
    assert_eq!(b["status"], "failed");
    let error = b["error"].as_str().unwrap();
    assert!(error.contains("sha256 mismatch"), "{error}");
    assert!(error.contains(&sha(b"beta\n")), "{error}");
    assert_eq!(ws.read("raw/a.csv"), "alpha\n");
    assert!(!ws.exists("raw/b.csv"), "no unverified file at a dest");
    assert!(
        !ws.exists("taskrun.lock"),
        "inline pins are not written to the lockfile"
    );

    // A pinned blob in the store is `cached` without a request.
    http.route("/b.csv", Route::ok("beta\n"));
    ws.run_report(&[], 0);
    let hits = http.hits("/a.csv");
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(report["summary"]["cached"], 2);
    assert_eq!(http.hits("/a.csv"), hits);
}

#[test]
fn a_pin_from_a_variable_or_matrix_is_interpolated_and_checked_after() {
    let http = Http::start();
    http.route("/a.csv", Route::ok("alpha\n"));
    let manifest = |pin: &str| {
        format!(
            "[vars]\npin = \"{pin}\"\n[tasks.get]\nmatrix = {{ f = [\"a\"] }}\n\
             download = {{ url = \"{}\", dest = \"raw/${{matrix.f}}\", sha256 = \"${{vars.pin}}\" }}\n",
            http.url("/${matrix.f}.csv")
        )
    };
    let ws = Workspace::new(&manifest(&sha(b"alpha\n")));
    ws.run(&[]).code(0);
    assert_eq!(ws.read("raw/a"), "alpha\n");

    // What is checked is the value: the error shows it, at the template's place.
    ws.manifest(&manifest("abc"));
    ws.check()
        .code(2)
        .says(&["malformed sha256 `abc`", "taskrun.toml:5:"]);
    let ws = Workspace::new(PINNED);
    ws.write("sources.csv", "id,url,sha256\na,http://127.0.0.1:9/a,xyz\n");
    ws.check()
        .code(2)
        .says(&["malformed sha256 `xyz`", "sources.csv:2"]);

    // A secret is never a pin.
    ws.manifest(&PINNED.replace("${item.sha256}", "${secret.PIN}"));
    ws.check()
        .code(2)
        .says(&["a sha256 pin may not contain a secret"]);
}
