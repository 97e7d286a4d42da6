//! The plan as JSON (`plan --format json`), described by `schema/plan.schema.json`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use super::Plan;
use super::placement::Placements;
use super::predict::Prediction;
use crate::model::{Action, CommandLine, ExecutedOn, Jitter, Readiness, RetryPolicy, TaskKind};

/// Bumped when a field is renamed or removed.
pub const FORMAT_VERSION: u32 = 1;

/// The whole plan.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "taskrun plan")]
pub struct PlanDoc {
    /// Always 1 for this layout.
    pub format_version: u32,
    /// `[pipeline] name`.
    pub pipeline: String,
    /// The manifest path as given.
    pub manifest: String,
    /// The targets asked for (empty: all tasks).
    pub targets: Vec<String>,
    /// Global running-task limit.
    pub concurrency: usize,
    /// Whether the run stops at the first failure.
    pub fail_fast: bool,
    /// The remote executor's URL (`[execution] remote` or `TASKRUN_REMOTE_EXECUTOR`);
    /// absent when none is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_executor: Option<String>,
    /// Selected tasks in the order they may start (by level).
    pub tasks: Vec<PlanTask>,
}

/// One task of the plan.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PlanTask {
    /// The task's name (`fetch[2023,01]` for an instance of a fan-out task).
    pub name: String,
    /// The declared task: the fan-out task of an instance, else the name itself.
    pub task: String,
    /// An instance's matrix values by axis and item fields by name; null otherwise.
    pub item: Option<crate::model::ItemValues>,
    /// command / download / service / group.
    pub kind: TaskKind,
    /// Its description.
    pub description: Option<String>,
    /// Names of its dependencies.
    pub deps: Vec<String>,
    /// 0 for tasks without deps, else 1 + the highest dep level.
    pub level: usize,
    /// What it does, resolved (secrets as `***`).
    pub action: PlanAction,
    /// Attempts and waits.
    pub retry: PlanRetry,
    /// Per-attempt limit in ms.
    pub timeout_ms: Option<u64>,
    /// Pool name → slots.
    pub pools: BTreeMap<String, u32>,
    /// Input patterns (`?`: may match nothing).
    pub inputs: Vec<String>,
    /// Declared outputs.
    pub outputs: Vec<String>,
    /// The predicted cache status.
    pub cache: Prediction,
    /// For a fan-out task whose items other tasks produce (SPEC §9): those tasks, as
    /// declared. Its instances are known once they have run; until then it is this one
    /// entry, `NAME[*]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expanded_after: Option<Vec<String>>,
    /// Where it would run: `remote` or `local`; absent when no remote executor is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executed_on: Option<ExecutedOn>,
    /// Why it would run locally, e.g. "service", "remote = false", "depends on service db",
    /// "holds secret TOKEN", "--remote-exec off"; absent when remote or when no executor is
    /// configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_reason: Option<String>,
}

/// A task's resolved action.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PlanAction {
    /// A command.
    Command {
        /// Shell text (with `sh -c`), or null for argv.
        shell: Option<String>,
        /// Program and arguments, or null for shell text.
        argv: Option<Vec<String>>,
        /// Working directory, relative to the manifest.
        cwd: Option<String>,
        /// `[env]` + task env, secrets as `***`.
        env: BTreeMap<String, String>,
    },
    /// A download.
    Download {
        /// Mirrors in order.
        urls: Vec<String>,
        /// Destination.
        dest: String,
        /// Pinned digest.
        sha256: Option<String>,
        /// Where the pin comes from (null when there is none).
        sha256_source: Option<PinOrigin>,
        /// Headers, secrets as `***`.
        headers: BTreeMap<String, String>,
        /// Size limit.
        max_bytes: Option<u64>,
        /// Resume with Range.
        resume: bool,
        /// Revalidate with the origin on a hit.
        revalidate: bool,
    },
    /// A service.
    Service {
        /// The command line as shown.
        run: String,
        /// "url URL" or "tcp HOST:PORT".
        ready: String,
        /// Readiness limit in ms.
        ready_timeout_ms: u64,
    },
    /// A group.
    Group {},
    /// A fan-out task expanded after the tasks that produce its items.
    Expand {
        /// Where its items will come from: `lines FILE`, `csv FILE` or `glob PATTERN`.
        items: String,
        /// Its action as written, placeholders kept.
        each: String,
    },
}

/// Where a download's pin was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PinOrigin {
    /// `sha256` in the manifest.
    Manifest,
    /// The manifest's lockfile (SPEC §10).
    Lockfile,
}

/// A retry policy with its schedule in words.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PlanRetry {
    /// Total attempts including the first.
    pub max_attempts: u32,
    /// Wait before the 2nd attempt, ms.
    pub initial_delay_ms: u64,
    /// Growth of each wait.
    pub factor: f64,
    /// Cap on one wait, ms.
    pub max_delay_ms: u64,
    /// none / full / equal.
    pub jitter: Jitter,
    /// Give up after this long, ms.
    pub max_elapsed_ms: Option<u64>,
    /// Only these exit codes are retried.
    pub exit_codes: Option<Vec<i32>>,
    /// e.g. "3 attempts, waits up to 0.5s, 1s".
    pub schedule: String,
}

fn ms(d: std::time::Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// Builds the JSON document.
pub fn document(
    plan: &Plan,
    targets: &[String],
    predictions: &[Prediction],
    placements: &Placements,
) -> PlanDoc {
    let p = &plan.pipeline;
    // Tasks (a fan-out's instances above all) mostly share one policy: its words are
    // written once (formatting them was 7% of the plan of 100,000 instances).
    let mut last_retry: Option<(&RetryPolicy, PlanRetry)> = None;
    let tasks = plan
        .order
        .iter()
        .map(|&i| {
            let t = plan.task(i);
            let retry = match &last_retry {
                Some((policy, words)) if **policy == t.retry => words.clone(),
                _ => {
                    let words = retry(&t.retry);
                    last_retry = Some((&t.retry, words.clone()));
                    words
                }
            };
            let (task, item) = t.instance_of();
            PlanTask {
                name: t.name.clone(),
                task,
                item,
                kind: t.expands.as_ref().map_or(t.kind(), |e| e.kind),
                description: t.description.clone(),
                deps: t.deps.clone(),
                level: plan.level[i],
                action: action(plan, i),
                retry,
                timeout_ms: t.timeout.map(ms),
                pools: t.uses.clone(),
                inputs: t
                    .inputs
                    .iter()
                    .map(|g| format!("{}{}", if g.optional { "?" } else { "" }, g.glob))
                    .collect(),
                outputs: t.outputs.iter().map(|o| o.to_string()).collect(),
                cache: match &t.expands {
                    Some(e) => Prediction {
                        status: super::predict::CacheStatus::Miss,
                        key: None,
                        reason: Some(format!(
                            "its instances are known once {} has run",
                            e.after.join(", ")
                        )),
                    },
                    None => predictions.get(i).cloned().unwrap_or(Prediction {
                        status: super::predict::CacheStatus::Off,
                        key: None,
                        reason: None,
                    }),
                },
                expanded_after: t.expands.as_ref().map(|e| e.after.clone()),
                executed_on: placements
                    .configured()
                    .then(|| placements.get(i).executed_on()),
                local_reason: placements
                    .configured()
                    .then(|| placements.get(i).local_reason().map(|r| r.to_string()))
                    .flatten(),
            }
        })
        .collect();
    PlanDoc {
        format_version: FORMAT_VERSION,
        pipeline: p.name.clone(),
        manifest: p.manifest_path.display().to_string(),
        targets: targets.to_vec(),
        concurrency: p.concurrency,
        fail_fast: p.fail_fast,
        remote_executor: p.execution.remote.as_ref().map(|u| u.to_string()),
        tasks,
    }
}

fn action(plan: &Plan, i: usize) -> PlanAction {
    let t = plan.task(i);
    if let Some(e) = &t.expands {
        let declared = plan.pipeline.fanouts.iter().find(|f| f.name == e.task);
        return PlanAction::Expand {
            items: format!("{} {}", e.source.kind.as_str(), e.source.path),
            each: declared.map(|f| f.template.clone()).unwrap_or_default(),
        };
    }
    match &t.action {
        Action::Command(cmd) => {
            let mut env: BTreeMap<String, String> = plan
                .pipeline
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.redacted()))
                .collect();
            env.extend(t.env.iter().map(|(k, v)| (k.clone(), v.redacted())));
            let (shell, argv) = match cmd {
                CommandLine::Shell(s) => (Some(s.redacted()), None),
                CommandLine::Argv(a) => (None, Some(a.iter().map(|x| x.redacted()).collect())),
            };
            PlanAction::Command {
                shell,
                argv,
                cwd: t.cwd.as_ref().map(|c| c.to_string()),
                env,
            }
        }
        Action::Download(d) => PlanAction::Download {
            urls: d.urls.iter().map(|u| u.redacted()).collect(),
            dest: d.dest.to_string(),
            sha256: d.sha256.clone(),
            sha256_source: d.sha256.as_ref().map(|_| match d.pin_source {
                crate::model::PinSource::Manifest => PinOrigin::Manifest,
                crate::model::PinSource::Lockfile(_) => PinOrigin::Lockfile,
            }),
            headers: d
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.redacted()))
                .collect(),
            max_bytes: d.max_bytes,
            resume: d.resume,
            revalidate: d.revalidate,
        },
        Action::Service(s) => PlanAction::Service {
            run: s.run.display(),
            ready: match &s.ready {
                Readiness::Url(u) => format!("url {u}"),
                Readiness::Tcp(a) => format!("tcp {a}"),
            },
            ready_timeout_ms: ms(s.ready_timeout),
        },
        Action::Group => PlanAction::Group {},
    }
}

fn retry(r: &RetryPolicy) -> PlanRetry {
    PlanRetry {
        max_attempts: r.max_attempts,
        initial_delay_ms: ms(r.initial_delay),
        factor: r.factor,
        max_delay_ms: ms(r.max_delay),
        jitter: r.jitter,
        max_elapsed_ms: r.max_elapsed.map(ms),
        exit_codes: r.exit_codes.clone(),
        schedule: schedule_words(r),
    }
}

/// The retry schedule in words: "3 attempts, waits up to 0.5s, 1s".
pub fn schedule_words(r: &RetryPolicy) -> String {
    if r.max_attempts <= 1 {
        return "1 attempt, no retry".into();
    }
    const SHOWN: u32 = 6;
    let waits: Vec<String> = (2..=r.max_attempts.min(SHOWN + 1))
        .map(|n| short_duration(r.base_delay(n)))
        .collect();
    let more = if r.max_attempts > SHOWN + 1 {
        ", …"
    } else {
        ""
    };
    let how = match r.jitter {
        Jitter::None => "waits",
        Jitter::Full => "waits up to",
        Jitter::Equal => "waits half to all of",
    };
    let mut s = format!(
        "{} attempts, {how} {}{more}",
        r.max_attempts,
        waits.join(", ")
    );
    if let Some(e) = r.max_elapsed {
        s.push_str(&format!(", gives up after {}", short_duration(e)));
    }
    if let Some(codes) = &r.exit_codes {
        let list: Vec<String> = codes.iter().map(i32::to_string).collect();
        s.push_str(&format!(", only on exit codes {}", list.join(", ")));
    }
    s
}

/// Durations for people: "0.5s", "2s", "1m 30s".
pub fn short_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        let s = format!("{secs:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        format!("{s}s")
    } else {
        humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
    }
}

/// The plan JSON Schema, pretty-printed.
pub fn plan_schema_json() -> String {
    let schema = schemars::schema_for!(PlanDoc);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}
