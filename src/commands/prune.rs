//! `.taskrun/runs` and `.taskrun/logs` kept to the newest runs, so a workspace that runs
//! every few minutes does not fill its disk with reports.

/// Run reports and log directories kept in `.taskrun/` (older ones are deleted).
pub const KEEP_RUNS: usize = 50;

/// Deletes all but the newest `keep` run reports and log directories; run ids sort by time.
pub fn prune_old_runs(state_dir: &std::path::Path, keep: usize) {
    for (sub, is_report) in [("runs", true), ("logs", false)] {
        let Ok(entries) = std::fs::read_dir(state_dir.join(sub)) else {
            continue;
        };
        let mut names: Vec<std::path::PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let json = p.extension().is_some_and(|e| e == "json");
                if is_report { json } else { p.is_dir() }
            })
            .collect();
        if names.len() <= keep {
            continue;
        }
        names.sort();
        for old in &names[..names.len() - keep] {
            let removed = if is_report {
                // The run's timings page goes with its report, when there is one.
                let _ = std::fs::remove_file(old.with_extension("html"));
                std::fs::remove_file(old)
            } else {
                std::fs::remove_dir_all(old)
            };
            if let Err(e) = removed {
                tracing::warn!("cannot remove {}: {e}", old.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_newest_runs_are_kept() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..5 {
            let id = format!("20261125T1000{i:02}Z-abcd");
            std::fs::create_dir_all(d.path().join("runs")).unwrap();
            std::fs::write(d.path().join("runs").join(format!("{id}.json")), "{}").unwrap();
            std::fs::create_dir_all(d.path().join("logs").join(&id)).unwrap();
        }
        super::prune_old_runs(d.path(), 3);
        let mut runs: Vec<String> = std::fs::read_dir(d.path().join("runs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        runs.sort();
        assert_eq!(runs.len(), 3);
        assert!(runs[0].starts_with("20261125T100002Z"));
        assert_eq!(std::fs::read_dir(d.path().join("logs")).unwrap().count(), 3);
    }
}
