//! Checks, before a run starts, that the files it was asked to write at its end (`--report`,
//! `--junit`, `--trace`) can be written: a typo in a CI job's path should stop the job at
//! once, not after an hour of work whose report then goes nowhere.

use std::path::Path;

/// Why `path` (given with `flag`) cannot take a file, or `Ok` when a file can be created
/// beside it. Creates the missing parent directories, as the writers at the end do.
pub fn check(flag: &str, path: &Path) -> Result<(), String> {
    let why = |e: &dyn std::fmt::Display| format!("cannot write {flag} {}: {e}", path.display());
    if path.as_os_str().is_empty() {
        return Err(format!("{flag} needs a file name"));
    }
    if path.is_dir() {
        return Err(why(&"it is a directory"));
    }
    // `create_dir_all` would only say "File exists" of a file where a directory must be.
    if let Some(file) = path
        .ancestors()
        .skip(1)
        .find(|a| a.exists() || a.is_symlink())
        && !file.as_os_str().is_empty()
        && !file.is_dir()
    {
        return Err(why(&format_args!("{} is not a directory", file.display())));
    }
    // A temp file beside it, as the final write makes, proves the directory takes one.
    crate::workspace::user_temp_beside(path)
        .map(drop)
        .map_err(|e| why(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_in_a_new_directory_can_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports/run.json");
        assert_eq!(check("--report", &path), Ok(()));
        assert!(dir.path().join("reports").is_dir());
        // The probe leaves nothing behind, not even the file itself.
        assert_eq!(
            std::fs::read_dir(dir.path().join("reports"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_directory_or_a_path_under_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = check("--junit", dir.path()).unwrap_err();
        assert!(
            err.contains("--junit") && err.contains("is a directory"),
            "{err}"
        );
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let err = check("--trace", &file.join("t.json")).unwrap_err();
        assert!(err.starts_with("cannot write --trace"), "{err}");
        assert!(err.ends_with("f is not a directory"), "{err}");
    }
}
