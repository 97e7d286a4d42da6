//! Where each task runs (SPEC §11): on the remote executor, or here and why.
//!
//! A pure function of the plan and `--remote-exec`: `plan` shows it, and `run` sends the
//! tasks it places remotely to the cluster. Only `run` tasks go remote, and not one that
//! needs this machine: a task that depends on a service (directly: a service is up only
//! while its own dependents need it) or one whose command or environment holds a
//! `${secret.X}` (an Action is stored in the cluster's CAS for anyone with access to read).

use std::fmt;

use super::Plan;
use crate::model::{Action, CommandLine, ExecutedOn, Pipeline, TaskKind};
use crate::template::Template;

/// Where one task runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Sent to the remote executor.
    Remote,
    /// Run on this machine, for this reason.
    Local(LocalReason),
}

/// Why a task runs on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalReason {
    /// No `[execution] remote` and no `TASKRUN_REMOTE_EXECUTOR`.
    NoExecutor,
    /// `--remote-exec off`.
    SwitchedOff,
    /// A download (it fetches into this machine's workspace).
    Download,
    /// A service (its dependents reach it on this machine).
    Service,
    /// A group (nothing to execute).
    Group,
    /// The task says `remote = false`.
    OptedOut,
    /// It depends on this service (by name), which runs here.
    DependsOnService(String),
    /// Its command, `[env]` or `env` holds this secret (by name, never its value).
    HoldsSecret(String),
    /// This output lies outside its `cwd`: an Action names outputs below its working
    /// directory (`../out/x` is refused by clusters).
    OutputOutsideCwd(String),
}

impl fmt::Display for LocalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalReason::NoExecutor => f.write_str("no executor configured"),
            LocalReason::SwitchedOff => f.write_str("--remote-exec off"),
            LocalReason::Download => f.write_str("download"),
            LocalReason::Service => f.write_str("service"),
            LocalReason::Group => f.write_str("group"),
            LocalReason::OptedOut => f.write_str("remote = false"),
            LocalReason::DependsOnService(s) => write!(f, "depends on service {s}"),
            LocalReason::HoldsSecret(s) => write!(f, "holds secret {s}"),
            LocalReason::OutputOutsideCwd(o) => write!(f, "output {o} outside its cwd"),
        }
    }
}

impl Placement {
    /// `remote` or `local`.
    pub fn executed_on(&self) -> ExecutedOn {
        match self {
            Placement::Remote => ExecutedOn::Remote,
            Placement::Local(_) => ExecutedOn::Local,
        }
    }

    /// Why it runs here, when it does.
    pub fn local_reason(&self) -> Option<&LocalReason> {
        match self {
            Placement::Remote => None,
            Placement::Local(r) => Some(r),
        }
    }
}

impl fmt::Display for Placement {
    /// `remote`, or `local (REASON)`: what the text plan shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Remote => f.write_str("remote"),
            Placement::Local(r) => write!(f, "local ({r})"),
        }
    }
}

/// Every task's placement, by task index (unselected tasks included, so indices match
/// [`Plan`]'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placements {
    /// An executor is configured: the placements are worth showing.
    configured: bool,
    each: Vec<Placement>,
}

impl Placements {
    /// Whether an executor is configured (with `--remote-exec off` too): without one the
    /// plan says nothing about placement, as before remote execution existed.
    pub fn configured(&self) -> bool {
        self.configured
    }

    /// The placement of task `i`.
    pub fn get(&self, i: usize) -> &Placement {
        self.each
            .get(i)
            .unwrap_or(&Placement::Local(LocalReason::NoExecutor))
    }

    /// Whether task `i` is sent to the executor.
    pub fn is_remote(&self, i: usize) -> bool {
        *self.get(i) == Placement::Remote
    }
}

/// Places every task of `plan`; `switched_off` is `--remote-exec off`.
pub fn place(plan: &Plan, switched_off: bool) -> Placements {
    let p = &plan.pipeline;
    let n = p.tasks.len();
    let configured = p.execution.remote.is_some();
    let everywhere = |r: LocalReason| vec![Placement::Local(r); n];
    let each = if !configured {
        everywhere(LocalReason::NoExecutor)
    } else if switched_off {
        everywhere(LocalReason::SwitchedOff)
    } else {
        let env_secret = secret_in(p.env.values());
        (0..n)
            .map(|i| place_one(plan, i, env_secret.as_deref()))
            .collect()
    };
    Placements { configured, each }
}

/// One task, with an executor configured and allowed; `env_secret` is the first secret of
/// `[env]`, which every command is given.
fn place_one(plan: &Plan, i: usize, env_secret: Option<&str>) -> Placement {
    let task = plan.task(i);
    let local = Placement::Local;
    let command = match &task.action {
        Action::Command(c) => c,
        Action::Download(_) => return local(LocalReason::Download),
        Action::Service(_) => return local(LocalReason::Service),
        Action::Group => return local(LocalReason::Group),
    };
    if !task.remote {
        return local(LocalReason::OptedOut);
    }
    if let Some(&d) = plan.deps[i]
        .iter()
        .find(|&&d| plan.task(d).kind() == TaskKind::Service)
    {
        return local(LocalReason::DependsOnService(plan.task(d).name.clone()));
    }
    if let Some(cwd) = task
        .cwd
        .as_ref()
        .filter(|c| !matches!(c.as_str(), "" | "."))
        && let Some(out) = task.outputs.iter().find(|o| !cwd.contains(o.as_str()))
    {
        return local(LocalReason::OutputOutsideCwd(out.to_string()));
    }
    let in_command = match command {
        CommandLine::Shell(t) => secret_in(std::iter::once(t)),
        CommandLine::Argv(args) => secret_in(args.iter()),
    };
    let secret = in_command
        .or_else(|| secret_in(task.env.values()))
        .or_else(|| env_secret.map(str::to_string));
    match secret {
        Some(name) => local(LocalReason::HoldsSecret(name)),
        None => Placement::Remote,
    }
}

/// The name of the first secret in `templates`.
fn secret_in<'t>(templates: impl IntoIterator<Item = &'t Template>) -> Option<String> {
    templates
        .into_iter()
        .find_map(|t| t.secret_names().next().map(str::to_string))
}

/// `--remote-exec on` for a manifest that names no executor: a usage error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--remote-exec on, but no remote executor is configured for {}", .manifest.display())]
pub struct NoExecutor {
    /// The manifest as given.
    pub manifest: std::path::PathBuf,
}

impl NoExecutor {
    /// What to do about it.
    pub fn hint(&self) -> String {
        format!(
            "set `[execution] remote = \"grpc://HOST:PORT\"` in {}, or {}",
            self.manifest.display(),
            crate::manifest::execution::EXECUTOR_ENV
        )
    }
}

/// For `--remote-exec on`: fine when `pipeline` names an executor.
pub fn require_executor(pipeline: &Pipeline) -> Result<(), NoExecutor> {
    match pipeline.execution.remote {
        Some(_) => Ok(()),
        None => Err(NoExecutor {
            manifest: pipeline.manifest_path.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(text: &str, env: &[(&str, &str)]) -> Plan {
        let path = std::path::Path::new("taskrun.toml");
        let opts = crate::manifest::LoadOptions::default();
        let lookup = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let p = crate::manifest::load_str(path, text.into(), &opts, &lookup).unwrap();
        Plan::build(p, &[]).unwrap()
    }

    const TASKS: &str = r#"
[tasks.db]
service = { run = "sleep 9", ready = { tcp = "127.0.0.1:1" } }
[tasks.get]
download = { url = "http://127.0.0.1:1/x", dest = "x" }
[tasks.all]
deps = ["build", "pinned", "query", "signed", "argv", "envd", "get", "after-group"]
[tasks.build]
run = "make"
[tasks.pinned]
run = "make"
remote = false
[tasks.query]
run = "psql"
deps = ["db"]
[tasks.group]
deps = ["db"]
[tasks.after-group]
run = "true"
deps = ["group"]
[tasks.signed]
run = "curl -H 'token: ${secret.RBE_TOKEN}' x"
[tasks.argv]
run = ["sign", "--key", "${secret.KEY}"]
[tasks.envd]
run = "deploy"
env = { TOKEN = "${secret.DEPLOY}" }
"#;

    fn words(p: &Placements, plan: &Plan) -> Vec<(String, String)> {
        (0..plan.pipeline.tasks.len())
            .map(|i| (plan.task(i).name.clone(), p.get(i).to_string()))
            .collect()
    }

    #[test]
    fn each_reason_in_its_place() {
        let text = format!("[execution]\nremote = \"grpc://127.0.0.1:1\"\n{TASKS}");
        let plan = plan_of(&text, &[]);
        let got = words(&place(&plan, false), &plan);
        let want = [
            ("db", "local (service)"),
            ("get", "local (download)"),
            ("all", "local (group)"),
            ("build", "remote"),
            ("pinned", "local (remote = false)"),
            ("query", "local (depends on service db)"),
            ("group", "local (group)"),
            // Not through a group: the service is stopped once the group is done.
            ("after-group", "remote"),
            ("signed", "local (holds secret RBE_TOKEN)"),
            ("argv", "local (holds secret KEY)"),
            ("envd", "local (holds secret DEPLOY)"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want);
        let off = place(&plan, true);
        assert!(off.configured());
        assert_eq!(off.get(3).to_string(), "local (--remote-exec off)");
    }

    #[test]
    fn an_output_outside_its_cwd_keeps_a_command_here() {
        let text = "[execution]\nremote = \"grpc://h:1\"\n\
                    [tasks.out]\ncwd = \"sub\"\noutputs = [\"o/x\"]\nrun = \"true\"\n\
                    [tasks.in]\ncwd = \"sub\"\noutputs = [\"sub/x\"]\nrun = \"true\"\n\
                    [tasks.root]\ncwd = \".\"\noutputs = [\"r\"]\nrun = \"true\"\n";
        let plan = plan_of(text, &[]);
        let got = words(&place(&plan, false), &plan);
        assert_eq!(
            got,
            [
                ("out", "local (output o/x outside its cwd)".to_string()),
                ("in", "remote".to_string()),
                ("root", "remote".to_string()),
            ]
            .map(|(n, w)| (n.to_string(), w))
        );
    }

    #[test]
    fn a_secret_in_the_global_env_keeps_every_command_here() {
        let text = "[execution]\nremote = \"grpc://h:1\"\n[env]\nT = \"${secret.T}\"\n[tasks.a]\nrun = \"true\"\n";
        let plan = plan_of(text, &[]);
        assert_eq!(
            place(&plan, false).get(0),
            &Placement::Local(LocalReason::HoldsSecret("T".into()))
        );
    }

    #[test]
    fn nothing_is_remote_without_an_executor_and_the_variable_names_one() {
        let plan = plan_of(TASKS, &[]);
        let p = place(&plan, false);
        assert!(!p.configured());
        assert!((0..plan.pipeline.tasks.len()).all(|i| !p.is_remote(i)));
        assert!(require_executor(&plan.pipeline).is_err());

        let plan = plan_of(
            TASKS,
            &[(crate::manifest::execution::EXECUTOR_ENV, "grpcs://rbe")],
        );
        let p = place(&plan, false);
        assert!(p.configured() && p.is_remote(3));
        assert!(require_executor(&plan.pipeline).is_ok());
    }
}
