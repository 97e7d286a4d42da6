//! Reading the text files a pipeline is made of (the manifest, its lockfile, item files):
//! regular files only, of a bounded size. A manifest from someone else's pull request may
//! name a FIFO (opening it waits for a writer forever) or a symlink to `/dev/zero` (reading
//! it takes every byte of memory); `taskrun check` in CI must refuse those, not hang.

use std::io::{self, Read};
use std::path::Path;

/// The largest text file taskrun reads: 25× a 100,000-task manifest (10.7 MB), 60× a list
/// of 100,000 URLs (3.7 MB).
pub const MAX_TEXT_FILE: u64 = 256 << 20;

/// The bytes of the regular file at `path` (symlinks followed), at most [`MAX_TEXT_FILE`] of
/// them; anything else, or anything larger, is an error that says so.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    // Checked before opening: opening a FIFO blocks until someone writes to it.
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a directory, a device or a pipe)",
        ));
    }
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "larger than {} MiB, the most taskrun reads of a text file",
                MAX_TEXT_FILE >> 20
            ),
        )
    };
    if meta.len() > MAX_TEXT_FILE {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow between the check and the read.
    std::fs::File::open(path)?
        .take(MAX_TEXT_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_TEXT_FILE {
        return Err(too_large());
    }
    Ok(bytes)
}

/// [`read`], as UTF-8 text.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?).map_err(|e| {
        // Where: the line and column (in characters) of the first byte that is no UTF-8.
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&good[start..]).chars().count() + 1;
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not UTF-8 text at line {line}, column {column} (save the file as UTF-8)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_is_not_utf8_is_refused_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, b"[tasks.a]\nrun = \"\xc3\xa9\xff\"\n").unwrap();
        let e = read_to_string(&path).unwrap_err();
        assert!(e.to_string().contains("line 2, column 9"), "{e}");
    }

    #[test]
    fn a_fifo_a_device_and_a_directory_are_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("list.txt");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let e = read(&fifo).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let zero = dir.path().join("zero.txt");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(
            read(&zero)
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
        assert!(read(dir.path()).is_err());
        std::fs::write(dir.path().join("ok.txt"), "a\nb\n").unwrap();
        assert_eq!(
            read_to_string(&dir.path().join("ok.txt")).unwrap(),
            "a\nb\n"
        );
    }

    #[test]
    fn a_file_over_the_limit_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.csv");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_TEXT_FILE + 1).unwrap(); // sparse: no disk used
        let e = read(&big).unwrap_err();
        assert!(e.to_string().contains("larger than 256 MiB"), "{e}");
    }
}
