//! What the commands taskrun starts inherit from taskrun itself.

use crate::support::Workspace;

/// `THP_enabled` of a process's status: whether it may get transparent huge pages.
fn thp_enabled(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// taskrun turns huge pages off for its own heap (and back on for a large manifest); the
/// setting is inherited across exec, so a task must get back the one taskrun started with.
#[test]
fn tasks_keep_the_huge_page_setting_taskrun_started_with() {
    let own = thp_enabled(&std::fs::read_to_string("/proc/self/status").unwrap());
    if own.is_empty() {
        eprintln!("skipped: this kernel does not report THP_enabled");
        return;
    }
    // The shell's parent is taskrun itself. taskrun holds the child's setting for itself
    // while it spawns (a vfork-style spawn shares its memory until exec) and puts its own
    // back right after; the shell reads the parent's a moment later, so that a loaded
    // machine that has not yet run that line does not show the spawn's value.
    let probe = "[tasks.probe]\nrun = \"grep THP_enabled /proc/self/status > thp.txt; sleep 0.3; grep THP_enabled /proc/$$PPID/status > own.txt\"\n";
    let always = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|mode| mode.starts_with("[always]"));
    // A small manifest (taskrun keeps huge pages off), a large one with fewer tasks than it
    // turns them back on for (long lines, like a manifest of downloads), and one with enough.
    let padding: String = (0..2500)
        .map(|i| format!("[tasks.pad{i}]\ndeps = []\n"))
        .collect();
    let wordy: String = (0..1000)
        .map(|i| format!("[tasks.pad{i}]\ndescription = \"{}\"\n", "x".repeat(100)))
        .collect();
    // Where huge pages are unsupported, or off for the test runner itself (taskrun then
    // leaves them off), "1" cannot show.
    let large_heap = if always || own != "1" { "0" } else { "1" };
    // A fan-out of 2,500 instances in a small manifest: counted when expanded, and on the
    // second run (from the remembered pipeline) by the memo's size.
    let numbers: Vec<String> = (0..2500).map(|i| i.to_string()).collect();
    let fan_out = format!(
        "{probe}[tasks.fan]\nmatrix = {{ n = [{}] }}\nrun = \"true\"\n",
        numbers.join(",")
    );
    for (manifest, own_heap) in [
        (probe.to_string(), "0"),
        (format!("{probe}{wordy}"), "0"),
        (format!("{probe}{padding}"), large_heap),
        (fan_out, large_heap),
    ] {
        let ws = Workspace::new(&manifest);
        for run in ["first", "remembered"] {
            let _ = std::fs::remove_file(ws.path("own.txt"));
            ws.run(&["probe", "-q"]).code(0);
            assert_eq!(
                thp_enabled(&ws.read("own.txt")),
                own_heap,
                "taskrun's own heap, {run} run, manifest of {} bytes",
                manifest.len()
            );
        }
        assert_eq!(
            thp_enabled(&ws.read("thp.txt")),
            own,
            "manifest of {} bytes",
            manifest.len()
        );
        assert_eq!(
            thp_enabled(&ws.read("own.txt")),
            own_heap,
            "taskrun's own heap, manifest of {} bytes",
            manifest.len()
        );
    }
}
