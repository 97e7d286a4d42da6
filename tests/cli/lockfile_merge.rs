//! SPEC §10: a run records its new pins into the lockfile as it is when the run ends, not
//! as it was when the run started: another run (targeted, on other tasks) may have pinned
//! its downloads in between, and they must stay.

use crate::fault_server::Route;
use crate::http::{Http, sha};
use crate::support::Workspace;

#[test]
fn pins_another_run_wrote_meanwhile_are_kept() {
    let http = Http::start();
    http.route("/s", Route::ok("slow one\n"));
    http.route("/b", Route::ok("bee\n"));
    let (s_url, b_url) = (http.url("/s"), http.url("/b"));
    let ws = Workspace::new(&format!(
        "[tasks.s]\ndownload = {{ url = \"{s_url}\", dest = \"raw/s\" }}\n\
         [tasks.b]\ndownload = {{ url = \"{b_url}\", dest = \"raw/b\" }}\n\
         [tasks.other]\ndeps = [\"b\"]\nrun = \"cat other.lock > taskrun.lock\"\n"
    ));
    // What a run of `s` alone, beside this one, writes while this one runs `b`.
    ws.write(
        "other.lock",
        &format!(
            "version = 1\n[[download]]\ntask = \"s\"\nurl = \"{s_url}\"\nsha256 = \"{}\"\nsize = 9\n",
            sha(b"slow one\n")
        ),
    );
    ws.run(&["b", "other"]).code(0);
    let lock = ws.read("taskrun.lock");
    assert!(lock.contains("task = \"s\""), "{lock}");
    assert!(lock.contains("task = \"b\""), "{lock}");
    ws.run(&["--locked"]).code(0);
}
