//! How a taskrun cache entry is kept in a REAPI ActionCache (`[cache] remote = "grpc://..."`).
//!
//! **The key.** An ActionCache is keyed by Action digests. Each taskrun cache key (the hex
//! sha256 of a task's key parts) becomes a fixed, synthetic Action: a `Command` whose
//! `arguments` are `["taskrun-cache-entry", ENTRY_FORMAT, "<key hex>"]` and nothing else, and an
//! `Action` naming that Command and the empty input root. Any machine derives the same
//! Action digest from the same key, without knowing anything else about the task; nothing
//! ever executes it. Both messages are uploaded to the CAS before `UpdateActionResult`, since
//! servers may check that an Action they cache exists.
//!
//! **The entry.** The result is an `ActionResult` with `exit_code` 0 (failed tasks are never
//! uploaded), one `output_files` entry per output file (root-relative path, digest,
//! executable bit) and `stdout_digest` for the recorded log. What an ActionResult has no field
//! for (file modes, the declared output directories, the digest dependents see, the key's
//! parts for `explain`, creation time, a download's validators) travels as taskrun's own JSON
//! action record, stored as a CAS blob and listed as one more output file under the reserved
//! path [`RECORD_PATH`]. An output file rather than `auxiliary_metadata`: servers keep the
//! blobs an ActionResult's outputs name alive as long as the entry (and may check they exist
//! when it is stored), and no task may ever declare a path under `.taskrun/`, so the name
//! cannot collide with a real output.
//!
//! **Reading it back.** The record is authoritative, but only once it agrees with the
//! ActionResult: same output files (path, digest, executable bit), same log, no directories
//! or symlinks (taskrun never stores those), exit code 0, and the record's own checks
//! (version, key, checksum, safe paths). The caller then applies SPEC §13's declared-path
//! rule to it as to any record, local or remote.

use super::record::ActionRecord;
use crate::reapi::{Digest, proto};

/// The first argument of every taskrun cache-entry Command.
pub const COMMAND_NAME: &str = "taskrun-cache-entry";

/// The version of this mapping: a change that makes old entries unreadable bumps it, which
/// changes every Action digest (old entries are then simply never asked for).
pub const ENTRY_FORMAT: &str = "1";

/// The output file that carries the JSON action record. Never a declared output (SPEC §13:
/// nothing under `.taskrun/` may be one).
pub const RECORD_PATH: &str = ".taskrun/action-record.json";

/// The largest record taken from a remote (records list files, not contents).
pub const MAX_RECORD_BYTES: u64 = 64 << 20;

/// The synthetic Action of one cache key, with the blobs that define it.
#[derive(Debug, Clone)]
pub struct CacheAction {
    /// The Action digest: the ActionCache key.
    pub digest: Digest,
    /// The Command's digest and canonical encoding.
    pub command: (Digest, Vec<u8>),
    /// The Action's canonical encoding (its digest is [`CacheAction::digest`]).
    pub action: Vec<u8>,
}

/// The Action that stands for taskrun cache key `key` (64 lowercase hex digits).
pub fn cache_action(key: &str) -> CacheAction {
    let command = proto::Command {
        arguments: vec![COMMAND_NAME.into(), ENTRY_FORMAT.into(), key.into()],
        ..Default::default()
    };
    let command = Digest::of_message(&command);
    let action = proto::Action {
        command_digest: Some(command.0.to_proto()),
        // The empty Directory encodes to no bytes: its digest is the empty blob's.
        input_root_digest: Some(Digest::EMPTY.to_proto()),
        ..Default::default()
    };
    let (digest, action) = Digest::of_message(&action);
    CacheAction {
        digest,
        command,
        action,
    }
}

/// A digest written in a record (hex and size), as the API names it.
fn digest_of(hex: &str, size: u64) -> Result<Digest, String> {
    let hash = super::digest::from_hex(hex).ok_or_else(|| format!("bad digest {hex}"))?;
    Ok(Digest { hash, size })
}

/// The ActionResult that stores `record`, whose JSON is the blob `record_blob`.
pub fn action_result(
    record: &ActionRecord,
    record_blob: Digest,
) -> Result<proto::ActionResult, String> {
    let mut files = Vec::with_capacity(record.outputs.len() + 1);
    for o in &record.outputs {
        files.push(proto::OutputFile {
            path: o.path.clone(),
            digest: Some(digest_of(&o.sha256, o.size)?.to_proto()),
            is_executable: o.mode & 0o111 != 0,
            ..Default::default()
        });
    }
    files.push(proto::OutputFile {
        path: RECORD_PATH.into(),
        digest: Some(record_blob.to_proto()),
        ..Default::default()
    });
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let stdout = match &record.log {
        Some(l) => Some(digest_of(&l.sha256, l.size)?.to_proto()),
        None => None,
    };
    Ok(proto::ActionResult {
        output_files: files,
        exit_code: 0,
        stdout_digest: stdout,
        ..Default::default()
    })
}

/// Where the record of `result` is: its digest, and its content when the server inlined it.
pub fn record_blob(result: &proto::ActionResult) -> Result<(Digest, &[u8]), String> {
    let mut found = result.output_files.iter().filter(|f| f.path == RECORD_PATH);
    let file = found
        .next()
        .ok_or("it has no taskrun action record (not a taskrun entry)")?;
    if found.next().is_some() {
        return Err("it lists the action record twice".into());
    }
    let d =
        Digest::from_field(file.digest.as_ref(), "the action record").map_err(|e| e.to_string())?;
    if d.size > MAX_RECORD_BYTES {
        return Err(format!("its action record is {} bytes", d.size));
    }
    Ok((d, &file.contents))
}

/// The record for `key` from `result` and the record's bytes (already verified against the
/// digest `result` names), checked whole and against `result`.
#[allow(deprecated)] // `output_file_symlinks` and friends: still read, to refuse them.
pub fn record_from_result(
    key: &str,
    result: &proto::ActionResult,
    record_bytes: &[u8],
) -> Result<ActionRecord, String> {
    if result.exit_code != 0 {
        return Err(format!("it records exit code {}", result.exit_code));
    }
    if !result.output_directories.is_empty()
        || !result.output_symlinks.is_empty()
        || !result.output_file_symlinks.is_empty()
        || !result.output_directory_symlinks.is_empty()
    {
        return Err("it holds directories or symlinks, which taskrun never stores".into());
    }
    let (d, _) = record_blob(result)?;
    if Digest::of_bytes(record_bytes) != d {
        return Err("its action record does not match its digest".into());
    }
    let record: ActionRecord =
        serde_json::from_slice(record_bytes).map_err(|e| format!("its action record: {e}"))?;
    record.verify(key)?;
    let mut named: Vec<(&str, Digest, bool)> = Vec::with_capacity(result.output_files.len());
    for f in result.output_files.iter().filter(|f| f.path != RECORD_PATH) {
        let d = Digest::from_field(f.digest.as_ref(), &f.path).map_err(|e| e.to_string())?;
        named.push((f.path.as_str(), d, f.is_executable));
    }
    let mut recorded = Vec::with_capacity(record.outputs.len());
    for o in &record.outputs {
        recorded.push((
            o.path.as_str(),
            digest_of(&o.sha256, o.size)?,
            o.mode & 0o111 != 0,
        ));
    }
    named.sort_unstable();
    recorded.sort_unstable();
    if named != recorded {
        return Err("its output files and its action record disagree".into());
    }
    let stdout = match &result.stdout_digest {
        Some(d) => Some(Digest::from_proto(d).map_err(|e| e.to_string())?),
        None => None,
    }
    .filter(|d| !d.is_empty());
    let logged = match &record.log {
        Some(l) => Some(digest_of(&l.sha256, l.size)?),
        None => None,
    };
    if stdout != logged {
        return Err("its stdout and its action record disagree".into());
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::record::{BlobRef, OutputFile, tests::sample};

    fn sealed() -> (ActionRecord, Vec<u8>, Digest) {
        let mut r = sample();
        r.outputs.push(OutputFile {
            path: "out/y".into(),
            sha256: "c".repeat(64),
            size: 5,
            mode: 0o600,
        });
        r.log = Some(BlobRef {
            sha256: "d".repeat(64),
            size: 9,
        });
        r.seal();
        let bytes = serde_json::to_vec(&r).unwrap();
        let d = Digest::of_bytes(&bytes);
        (r, bytes, d)
    }

    /// The mapping is part of the shared cache's format: every machine, every version of
    /// taskrun with this [`ENTRY_FORMAT`], must derive this very digest from this key. (The
    /// pinned value was checked against a hand-written protobuf encoding of the two messages.)
    #[test]
    fn a_key_maps_to_a_pinned_action_digest() {
        let key = "0123456789abcdef".repeat(4);
        let a = cache_action(&key);
        assert_eq!(
            (a.digest.hex().as_str(), a.digest.size),
            (
                "ee5a1a351988de5e21cfc0e98f538c89f2ffface313264fa0b40ca9cfa2eb112",
                138
            )
        );
        let cmd = <proto::Command as prost::Message>::decode(&a.command.1[..]).unwrap();
        assert_eq!(cmd.arguments, [COMMAND_NAME, ENTRY_FORMAT, key.as_str()]);
        assert_eq!(Digest::of_bytes(&a.action), a.digest);
        assert_ne!(cache_action(&"f".repeat(64)).digest, a.digest);
    }

    #[test]
    fn a_record_round_trips_through_an_action_result() {
        let (r, bytes, d) = sealed();
        let result = action_result(&r, d).unwrap();
        let paths: Vec<&str> = result
            .output_files
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(paths, [RECORD_PATH, "out/x", "out/y"]);
        assert!(result.output_files[1].is_executable && !result.output_files[2].is_executable);
        assert_eq!(result.stdout_digest.as_ref().unwrap().size_bytes, 9);
        assert_eq!(record_blob(&result).unwrap().0, d);
        assert_eq!(record_from_result(&r.key, &result, &bytes).unwrap(), r);
    }

    #[test]
    fn a_result_that_disagrees_with_its_record_is_refused() {
        let (r, bytes, d) = sealed();
        let good = action_result(&r, d).unwrap();
        let refused = |change: &dyn Fn(&mut proto::ActionResult), want: &str| {
            let mut res = good.clone();
            change(&mut res);
            let err = record_from_result(&r.key, &res, &bytes).unwrap_err();
            assert!(err.contains(want), "{err}");
        };
        refused(
            &|res| res.output_files[1].path = "taskrun.toml".into(),
            "disagree",
        );
        refused(&|res| res.output_files[2].is_executable = true, "disagree");
        refused(&|res| res.output_files.truncate(2), "disagree");
        refused(&|res| res.stdout_digest = None, "stdout");
        refused(&|res| res.exit_code = 1, "exit code");
        refused(
            &|res| res.output_directories.push(Default::default()),
            "directories",
        );
        refused(&|res| res.output_files.remove(0).path.clear(), "no taskrun");
        assert!(record_from_result(&"e".repeat(64), &good, &bytes).is_err());
        assert!(record_from_result(&r.key, &good, b"{}").is_err());
    }
}
