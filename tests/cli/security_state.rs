//! taskrun's own state in the workspace and the cache dir is no way in (SPEC §13): a
//! remembered manifest somebody else sealed, a `.taskrun` or a store directory that is a
//! link leading elsewhere.

use std::fs;

use crate::support::Workspace;

/// The memo's magic line (`taskrun manifest memo v2\n`): what precedes the sealed body.
const MEMO_MAGIC_LEN: usize = 25;

/// A memo rewritten with another command and sealed again with a plain sha256 (all that
/// anyone who can write `.taskrun/` could do) ran the forged command while `plan` showed
/// the manifest's. Now it is refused: the manifest is read and its command runs.
#[test]
fn a_remembered_manifest_sealed_by_someone_else_is_not_used() {
    use sha2::Digest as _;
    let said = "echo as-the-manifest-says-AAAAAAAAAAAAAAAAAAAAAAAA > said.txt";
    let forged = "echo forged > forged.txt;:                                   ";
    assert_eq!(said.len(), forged.len());
    let ws = Workspace::new(&format!("[tasks.a]\nrun = \"{said}\"\n"));
    ws.run(&["-q"]).code(0);
    ws.run(&["-q"]).code(0);
    let dir = ws.path(".taskrun/manifest");
    let memo = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let bytes = fs::read(&memo).unwrap();
    let body = &bytes[MEMO_MAGIC_LEN..bytes.len() - 32];
    let body = swap_bytes(body, said.as_bytes(), forged.as_bytes());
    let mut out = bytes[..MEMO_MAGIC_LEN].to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&sha2::Sha256::digest(&body));
    fs::write(&memo, out).unwrap();
    fs::remove_file(ws.path("said.txt")).unwrap();
    // `--force`: whichever command the run believes in runs.
    ws.run(&["-q", "--force"]).code(0);
    assert!(!ws.exists("forged.txt"), "the forged command ran");
    assert!(ws.exists("said.txt"), "the manifest's command did not run");
}

/// `body` with the bytes `from` replaced by `to` (the same length: the encoding's lengths
/// stay right).
fn swap_bytes(body: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = body
        .windows(from.len())
        .position(|w| w == from)
        .expect("the command is in the memo");
    let mut out = body.to_vec();
    out[at..at + from.len()].copy_from_slice(to);
    out
}
