//! `run` tasks: one attempt of a command in its own process group, with a timeout.

use crate::actions::outputs::{self, Snapshot};
use crate::actions::process::{self, End};
use crate::actions::{AttemptCtx, AttemptResult, env};
use crate::model::CommandLine;
use crate::report::AttemptOutcome;

/// Runs the command once: resolves secrets, spawns, streams output, applies the timeout, and
/// on failure deletes the declared outputs it created or changed (unless told to keep them).
pub async fn attempt(cmd: &CommandLine, ctx: &AttemptCtx<'_>) -> AttemptResult {
    let (argv, vars) = match (env::argv(cmd), env::env(ctx.pipeline, ctx.task)) {
        (Ok(a), Ok(v)) => (a, v),
        (Err(e), _) | (_, Err(e)) => return AttemptResult::failed(e.to_string(), false),
    };
    let cwd = env::workdir(ctx.pipeline, ctx.task);
    if let Err(e) = outputs::unlink_escapes(&ctx.pipeline.root, &ctx.task.outputs) {
        return AttemptResult::failed(e, false);
    }
    let snapshot = Snapshot::take(&ctx.pipeline.root, &ctx.task.outputs);
    let mut result = run(&argv, &cwd, &vars, ctx).await;
    if ctx.task.keep_failed_outputs {
        return result;
    }
    if result.outcome == AttemptOutcome::Succeeded {
        // Kept in case its outputs cannot be recorded (see `AttemptResult::before`).
        result.before = Some(std::sync::Arc::new(snapshot));
    } else {
        for path in snapshot.delete_changed() {
            let rel = path.strip_prefix(&ctx.pipeline.root).unwrap_or(&path);
            tracing::info!(task = %ctx.task.name, path = %rel.display(), "deleted output of failed attempt");
        }
    }
    result
}

async fn run(
    argv: &[String],
    cwd: &std::path::Path,
    vars: &[(String, String)],
    ctx: &AttemptCtx<'_>,
) -> AttemptResult {
    let spawned = process::spawn_task(argv, cwd, vars);
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let prog = argv.first().map(String::as_str).unwrap_or("");
            return AttemptResult::failed(
                format!("cannot start `{prog}` in {}: {e}", cwd.display()),
                false,
            );
        }
    };
    match process::supervise(child, ctx.task.timeout, ctx.stop.clone(), ctx.output).await {
        Ok(End::Exited(status)) if status.success() => {
            AttemptResult::succeeded().with_exit_code(Some(0))
        }
        Ok(End::Exited(status)) => {
            let (code, what) = process::describe(&status);
            AttemptResult::failed(what, true).with_exit_code(code)
        }
        Ok(End::TimedOut) => {
            let limit = ctx.task.timeout.unwrap_or_default();
            AttemptResult::failed(
                format!("timed out after {}", humantime::format_duration(limit)),
                true,
            )
            .with_outcome(AttemptOutcome::TimedOut)
        }
        Ok(End::Stopped) => {
            AttemptResult::failed("interrupted", false).with_outcome(AttemptOutcome::Cancelled)
        }
        Err(e) => AttemptResult::failed(format!("waiting for the command failed: {e}"), false),
    }
}
