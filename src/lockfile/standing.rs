//! Where each download stands against the lockfile, and what recording new pins changes.
//!
//! [`apply`] runs after the manifest is loaded (outside its memo, so an edited lockfile is
//! always seen) and before any cache key is computed: a current entry becomes the download's
//! `sha256` exactly like an inline pin. What is left unpinned is downloaded on trust and
//! pinned when the run ends ([`record`]).

use std::fmt;

use super::{Entry, Lockfile};
use crate::cache::Digest;
use crate::cache::digest::to_hex;
use crate::model::{Action, Download, LockedPin, PinSource, Task};
use crate::plan::Plan;

/// The pin of a download that just succeeded, collected by the scheduler when the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewPin {
    /// The task's index in the plan.
    pub task: usize,
    /// The content's sha256.
    pub sha256: Digest,
    /// The content's size.
    pub size: u64,
}

/// The URL an entry is recorded with: the first one as resolved, `${secret.X}` as written.
pub fn lock_url(d: &Download) -> String {
    d.urls
        .first()
        .map(crate::template::Template::with_secret_refs)
        .unwrap_or_default()
}

/// A task's download when the lockfile pins it (no inline pin, not revalidated).
pub fn lockable(task: &Task) -> Option<&Download> {
    match &task.action {
        Action::Download(d) if d.lockable() => Some(d),
        _ => None,
    }
}

/// A selected download that the lockfile does not pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpinned {
    /// The task's index in the plan.
    pub task: usize,
    /// Why: no entry, or one for another URL.
    pub why: Why,
}

/// Why a download has no current entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// No entry for the task.
    Missing,
    /// The entry was recorded for another URL.
    UrlChanged {
        /// The entry's URL.
        locked: String,
        /// The URL the manifest resolves now.
        now: String,
    },
    /// It has a current entry, but `taskrun lock --update` downloads it again.
    Update,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Missing => f.write_str("no entry"),
            Why::UrlChanged { locked, now } => {
                write!(
                    f,
                    "stale entry: it pins {locked}, the manifest now gives {now}"
                )
            }
            Why::Update => f.write_str("--update"),
        }
    }
}

/// Fills in `sha256` from the lockfile for every lockable download with a current entry
/// (unless `refresh(i)`: `taskrun lock --update` leaves those to download again), and
/// returns the selected lockable downloads it left unpinned, in plan order.
pub fn apply(plan: &mut Plan, lock: &Lockfile, refresh: &dyn Fn(usize) -> bool) -> Vec<Unpinned> {
    let file = super::file_name(&plan.pipeline.manifest_path);
    let manifest = shell_word(&plan.pipeline.manifest_path.display().to_string());
    let mut unpinned = Vec::new();
    for (i, task) in plan.pipeline.tasks.values_mut().enumerate() {
        let Action::Download(d) = &mut task.action else {
            continue;
        };
        if !d.lockable() {
            continue;
        }
        let now = lock_url(d);
        let why = match lock.entries.get(&task.name) {
            Some(e) if e.url == now && refresh(i) => Why::Update,
            Some(e) if e.url == now => {
                d.sha256 = Some(e.sha256.clone());
                d.pin_source = PinSource::Lockfile(Box::new(LockedPin {
                    file: file.clone(),
                    update: format!(
                        "taskrun lock --update {manifest} {}",
                        shell_word(&task.name)
                    ),
                }));
                continue;
            }
            Some(e) => Why::UrlChanged {
                locked: e.url.clone(),
                now,
            },
            None => Why::Missing,
        };
        if plan.selected[i] {
            unpinned.push(Unpinned { task: i, why });
        }
    }
    let mut rank = vec![usize::MAX; plan.pipeline.tasks.len()];
    for (r, &i) in plan.order.iter().enumerate() {
        rank[i] = r;
    }
    unpinned.sort_by_key(|u| rank[u.task]);
    unpinned
}

/// Entries that no longer pin anything, with why: a task that does not exist (only when
/// `all`: without TARGETs every task is in view), or a task that is no lockable download (an
/// inline `sha256` wins over its entry). With `all` false only selected tasks count.
pub fn prunable(plan: &Plan, lock: &Lockfile, all: bool) -> Vec<(String, &'static str)> {
    let tasks = &plan.pipeline.tasks;
    lock.entries
        .keys()
        .filter_map(|name| {
            let why = match tasks.get_index_of(name.as_str()) {
                // An instance of a fan-out expanded only after its producers run (SPEC §9).
                None if expanded_later(tasks, name) => return None,
                None if all => "no such task",
                None => return None,
                Some(i) if !all && !plan.selected[i] => return None,
                Some(i) => match &tasks[i].action {
                    Action::Download(d) if d.lockable() => return None,
                    // Pinned from this very lockfile: current, not stale.
                    Action::Download(d) if matches!(d.pin_source, PinSource::Lockfile(_)) => {
                        return None;
                    }
                    Action::Download(d) if d.sha256.is_some() => "pinned inline in the manifest",
                    Action::Download(_) => "revalidated (`revalidate = true`), never pinned",
                    _ => "not a download",
                },
            };
            Some((name.clone(), why))
        })
        .collect()
}

/// `name` is an instance of a fan-out task that stands as `NAME[*]` until its producers
/// have run: its entry cannot be judged now.
fn expanded_later(tasks: &crate::model::TaskMap, name: &str) -> bool {
    crate::manifest::split_instance(name).is_some_and(|(base, _)| {
        tasks
            .get(crate::manifest::fanout::deferred::stand_in_name(base).as_str())
            .is_some_and(|t| t.expands.is_some())
    })
}

/// One line of what `taskrun lock` (or a run) changed in the lockfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new entry.
    Added {
        /// The task.
        task: String,
        /// Its entry.
        new: Entry,
    },
    /// An entry replaced (new content or a new URL).
    Changed {
        /// The task.
        task: String,
        /// The entry before.
        old: Entry,
        /// The entry now.
        new: Entry,
    },
    /// An entry removed.
    Removed {
        /// The task.
        task: String,
        /// The entry removed.
        old: Entry,
        /// Why it went.
        why: &'static str,
    },
}

/// Digits of a digest shown in change lines (SPEC §10: at least 12).
const SHOWN: usize = 12;

fn short(hex: &str) -> &str {
    hex.get(..SHOWN).unwrap_or(hex)
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added { task, new } => {
                write!(
                    f,
                    "added   {task} {} ({} bytes)",
                    short(&new.sha256),
                    new.size
                )
            }
            Change::Changed { task, old, new } => {
                write!(
                    f,
                    "changed {task} {} → {}",
                    short(&old.sha256),
                    short(&new.sha256)
                )?;
                if old.url != new.url {
                    write!(f, " (url was {})", old.url)?;
                }
                Ok(())
            }
            Change::Removed { task, old, why } => {
                write!(f, "removed {task} {} ({why})", short(&old.sha256))
            }
        }
    }
}

/// Records `pins` in `lock` and returns what changed (an identical entry is no change).
pub fn record(lock: &mut Lockfile, plan: &Plan, pins: &[NewPin]) -> Vec<Change> {
    let mut changes = Vec::new();
    for pin in pins {
        let task = plan.task(pin.task);
        let Action::Download(d) = &task.action else {
            continue;
        };
        let new = Entry {
            url: lock_url(d),
            sha256: to_hex(&pin.sha256),
            size: pin.size,
        };
        let name = task.name.clone();
        match lock.entries.insert(name.clone(), new.clone()) {
            None => changes.push(Change::Added { task: name, new }),
            Some(old) if old != new => changes.push(Change::Changed {
                task: name,
                old,
                new,
            }),
            Some(_) => {}
        }
    }
    changes
}

/// Removes the `prunable` entries from `lock`.
pub fn prune(lock: &mut Lockfile, prunable: &[(String, &'static str)]) -> Vec<Change> {
    prunable
        .iter()
        .filter_map(|(name, why)| {
            let old = lock.entries.remove(name)?;
            Some(Change::Removed {
                task: name.clone(),
                old,
                why,
            })
        })
        .collect()
}

/// Pins for unpinned downloads that were `cached` (their unpinned key hit, e.g. the
/// lockfile was deleted): the file at `dest` was just restored from the record, so its
/// content is what taskrun downloaded before. Hashed once, here, at the end of the run.
pub fn cached_pins(plan: &Plan, unpinned: &[Unpinned], skip: &[NewPin]) -> Vec<NewPin> {
    let mut pinned = vec![false; plan.pipeline.tasks.len()];
    for p in skip {
        pinned[p.task] = true;
    }
    unpinned
        .iter()
        .filter(|u| !pinned[u.task])
        .filter_map(|u| {
            let Action::Download(d) = &plan.task(u.task).action else {
                return None;
            };
            let path = plan.pipeline.root.join(d.dest.as_str());
            let (sha256, size) = crate::cache::digest::hash_file(&path).ok()?;
            Some(NewPin {
                task: u.task,
                sha256,
                size,
            })
        })
        .collect()
}

/// `s` as one shell word: as is when it holds only safe characters, else single-quoted.
pub fn shell_word(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("fetch-a"), "fetch-a");
        assert_eq!(shell_word("get[a.csv]"), "'get[a.csv]'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(
            shell_word("pipelines/download.toml"),
            "pipelines/download.toml"
        );
    }

    #[test]
    fn change_lines_show_twelve_digits() {
        let e = |sha: &str, url: &str| Entry {
            url: url.into(),
            sha256: sha.repeat(64),
            size: 5,
        };
        let c = Change::Changed {
            task: "t".into(),
            old: e("a", "u"),
            new: e("b", "v"),
        };
        assert_eq!(
            c.to_string(),
            "changed t aaaaaaaaaaaa → bbbbbbbbbbbb (url was u)"
        );
        let a = Change::Added {
            task: "t".into(),
            new: e("c", "u"),
        };
        assert_eq!(a.to_string(), "added   t cccccccccccc (5 bytes)");
    }
}
