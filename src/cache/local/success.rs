//! [`LocalCache`]'s half of a success: snapshot the outputs, store them with the log, write
//! the action record (and upload it), and return the digest dependents see.

use std::time::SystemTime;

use super::LocalCache;
use crate::cache::digest::{from_hex, to_hex};
use crate::cache::key::{self, TaskKey, declared_outputs};
use crate::cache::outputs;
use crate::cache::record::{ActionRecord, BlobRef, RECORD_VERSION, record_parts};
use crate::cache::{CacheError, Digest, Produced};
use crate::model::Task;
use crate::plan::Plan;

impl LocalCache {
    /// Records a succeeded command or download `t` under `tk`. Only a failure to read the
    /// outputs is an error; a store that cannot be written is warned about and the run goes
    /// on (the digest is still right, the entry is just missing).
    pub(super) fn snapshot_and_store(
        &self,
        plan: &Plan,
        t: &Task,
        tk: &TaskKey,
        dep_digests: &[Digest],
        produced: Produced<'_>,
    ) -> Result<Digest, CacheError> {
        let output = produced.output;
        let store_it = t.is_cacheable() && !self.options.read_only;
        let snap = outputs::snapshot(
            &self.ws,
            &declared_outputs(t),
            &self.stats,
            store_it.then_some(&self.store),
            produced.written,
        )
        .map_err(CacheError::Outputs)?;
        let entries: Vec<key::OutputEntry> = snap
            .files
            .iter()
            .map(|o| key::OutputEntry {
                path: o.path.clone(),
                sha256: from_hex(&o.sha256).unwrap_or([0; 32]),
                mode: o.mode,
            })
            .collect();
        let digest =
            key::dependency_digest(&plan.pipeline, t, Some(&tk.key), dep_digests, &entries);
        if !store_it {
            return Ok(digest);
        }
        if let Some(why) = &snap.unstored {
            tracing::warn!(
                "`{}` succeeded but is not cached: the store cannot take {why}",
                t.name
            );
            return Ok(digest);
        }
        let log = if output.is_empty() {
            None
        } else {
            match self.store.put_bytes(output) {
                Ok(d) => Some(BlobRef {
                    sha256: to_hex(&d),
                    size: output.len() as u64,
                }),
                Err(e) => {
                    tracing::warn!(
                        "`{}` succeeded but is not cached: cannot store its log: {e}",
                        t.name
                    );
                    return Ok(digest);
                }
            }
        };
        let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let mut rec = ActionRecord {
            format_version: RECORD_VERSION,
            key: tk.hex(),
            task: t.name.clone(),
            parts: record_parts(&tk.parts),
            outputs: snap.files,
            output_dirs: snap.dirs,
            digest: to_hex(&digest),
            log,
            created: produced.made.map_or(now.clone(), |t| {
                humantime::format_rfc3339_millis(t).to_string()
            }),
            last_used: now,
            http: produced.validators.cloned(),
            checksum: String::new(),
        };
        match self.store.write_record(&mut rec) {
            Ok(Some(stamp)) => self.journal.remember(&t.name, &rec, stamp),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(
                    "`{}` succeeded but is not cached: cannot store its entry: {e}",
                    t.name
                );
                return Ok(digest);
            }
        }
        self.upload(rec);
        Ok(digest)
    }
}
