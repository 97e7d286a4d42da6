//! The predicted cache status of each task, shown by `plan` and `explain`.

use serde::Serialize;

/// hit / miss / off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// The result is in the cache; the task will not run.
    Hit,
    /// The task will run.
    Miss,
    /// The task is not cached (cache off, no outputs, service, group).
    Off,
}

/// What the cache expects for one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Prediction {
    /// hit / miss / off.
    pub status: CacheStatus,
    /// The cache key, when it can be computed without running anything.
    pub key: Option<String>,
    /// Why a miss (or a hit that needs a restore) happens.
    pub reason: Option<String>,
}

/// Why a task is not cached, in words.
pub fn off_reason(task: &crate::model::Task) -> &'static str {
    use crate::model::{Action, CachePolicy};
    match (&task.action, task.cache) {
        (Action::Service(_), _) => "services are never cached",
        (Action::Group, _) => "group: only aggregates its deps",
        (_, CachePolicy::Off) => "cache = \"off\"",
        _ => "no outputs declared (set outputs, or cache = \"on\")",
    }
}
