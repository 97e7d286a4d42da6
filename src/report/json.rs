//! Writing the JSON run report, and its JSON Schema.

use std::io::Write;
use std::path::Path;

use crate::report::RunReport;

/// Above this many tasks the report is written compact: it is then read by tools, and
/// pretty-printing a 10,000-task report doubled its size and cost a tenth of a no-op run.
const PRETTY_UP_TO: usize = 1000;

/// The report as JSON: pretty for pipelines people read, compact for huge ones.
pub fn to_string(report: &RunReport) -> String {
    if report.tasks.len() <= PRETTY_UP_TO {
        return serde_json::to_string_pretty(report)
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    }
    // Sized for the whole report up front: growing a multi-MiB buffer by doubling copies it
    // and faults in every new block (a 10,000-task report is ~260 bytes a task).
    let mut out = Vec::with_capacity(1024 + report.tasks.len() * BYTES_PER_TASK);
    match serde_json::to_writer(&mut out, report) {
        // serde_json writes only valid UTF-8.
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(e) => format!("{{\"error\": \"{e}\"}}"),
    }
}

/// A generous size of one compact task entry (a group's is ~260 bytes; longer ones grow
/// the buffer as usual).
const BYTES_PER_TASK: usize = 320;

/// Writes the report to `path` via a temp file and a rename, so no reader sees half of it.
pub fn write(report: &RunReport, path: &Path) -> std::io::Result<()> {
    write_atomic(path, to_string(report).as_bytes())
}

/// Writes the same report to several paths, serialising it once.
pub fn write_all<'a>(
    report: &RunReport,
    paths: impl IntoIterator<Item = &'a Path>,
) -> Vec<(&'a Path, std::io::Error)> {
    let text = to_string(report);
    paths
        .into_iter()
        .filter_map(|p| write_atomic(p, text.as_bytes()).err().map(|e| (p, e)))
        .collect()
}

/// How long a FIFO given as a report path may wait for its reader.
const READER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Writes `bytes` to `path` through a temp file in the same directory and a rename. A link
/// is written through (its target replaced, the link kept); what is not a regular file
/// (`/dev/stdout`, a FIFO) is written into as it is, never replaced by a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if std::fs::metadata(&target).is_ok_and(|m| !m.is_file()) {
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking open, tried for a while: a FIFO whose reader is a moment late still
        // gets the report, and one nobody reads fails (ENXIO) instead of holding the end of
        // the run, deaf to Ctrl-C, until a reader comes.
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&target)
        };
        let deadline = std::time::Instant::now() + READER_WAIT;
        let mut f = loop {
            match open() {
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(std::io::Error::other(format!(
                            "no process read from it within {}s",
                            READER_WAIT.as_secs()
                        )));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        // Then blocking writes: a reader that is there gets it all.
        let flags = rustix::fs::fcntl_getfl(&f)?;
        rustix::fs::fcntl_setfl(&f, flags - rustix::fs::OFlags::NONBLOCK)?;
        f.write_all(bytes)?;
        return f.write_all(b"\n");
    }
    // Named like every interrupted write's temp file: a kill -9 here leaves nothing that
    // input globs or output snapshots would see (a report may be written into the workspace).
    let mut tmp = crate::workspace::user_temp_beside(&target)?;
    tmp.write_all(bytes)?;
    tmp.write_all(b"\n")?;
    tmp.persist(&target).map_err(|e| e.error)?;
    Ok(())
}

/// The JSON Schema of the run report (checked in as `schema/report.schema.json`).
pub fn schema() -> String {
    let schema = schemars::schema_for!(RunReport);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in schema must match the types; `UPDATE_SCHEMAS=1 cargo test` refreshes it.
    #[test]
    fn report_schema_is_up_to_date() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/report.schema.json");
        let fresh = schema();
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &fresh).unwrap();
            return;
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == fresh,
            "schema/report.schema.json is stale: run `UPDATE_SCHEMAS=1 cargo test --lib report_schema` and commit it"
        );
    }
}
