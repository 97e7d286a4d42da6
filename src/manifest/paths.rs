//! Workspace-relative paths: normalised, and refused when absolute or escaping the root.

use crate::model::RelPath;

/// Why a path is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Starts at `/` (or a drive).
    Absolute,
    /// `..` climbs above the manifest's directory.
    Escapes,
    /// Nothing left after normalising (e.g. `.`), where a file is needed.
    Empty,
}

impl PathError {
    /// The explanation shown to users.
    pub fn message(&self, what: &str, path: &str) -> String {
        match self {
            PathError::Absolute => format!("{what} `{path}` is absolute"),
            PathError::Escapes => format!("{what} `{path}` escapes the manifest's directory"),
            PathError::Empty => format!("{what} `{path}` names no file"),
        }
    }
}

/// Normalises `path` lexically (drops `.`, folds `..`) and checks it stays inside the root.
pub fn normalize(path: &str, allow_root: bool) -> Result<RelPath, PathError> {
    if path.starts_with('/') || path.starts_with('\\') || path.get(1..3) == Some(":\\") {
        return Err(PathError::Absolute);
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(PathError::Escapes);
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() && !allow_root {
        return Err(PathError::Empty);
    }
    Ok(RelPath::normalized(&parts))
}

/// True when one path equals the other or lies inside it.
pub fn overlaps(a: &RelPath, b: &RelPath) -> bool {
    a.contains(b.as_str()) || b.contains(a.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses_escapes() {
        assert_eq!(
            normalize("./a/../b/c.csv", false).unwrap().as_str(),
            "b/c.csv"
        );
        assert_eq!(normalize("/etc/passwd", false), Err(PathError::Absolute));
        assert_eq!(normalize("a/../../x", false), Err(PathError::Escapes));
        assert_eq!(normalize(".", false), Err(PathError::Empty));
        assert_eq!(normalize(".", true).unwrap().as_str(), "");
    }

    #[test]
    fn nested_outputs_overlap() {
        let p = |s: &str| RelPath::parse(s).unwrap();
        assert!(overlaps(&p("out"), &p("out/x.csv")));
        assert!(overlaps(&p("out/x.csv"), &p("out/x.csv")));
        assert!(!overlaps(&p("out"), &p("output/x.csv")));
    }
}
