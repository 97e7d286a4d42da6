//! `taskrun check`: validate manifests for CI; every problem of every manifest, exit 0 or 2.

use crate::cli::CheckArgs;
use crate::exit_code;
use crate::plan::Plan;

use super::Error;

/// Validates each manifest (and its lockfile) and prints every problem of each (in colour
/// when `color`): one manifest's errors do not stop the others from being checked.
pub fn run(args: CheckArgs, color: bool) -> Result<u8, Error> {
    let mut failed = 0;
    for path in &args.manifests {
        let checked = super::load_pipeline(path, &args.vars)
            .and_then(|p| super::plan_pipeline(path, &[], p))
            .and_then(|plan| lockfile_ok(plan, args.locked, &args.vars));
        match checked {
            Ok(n) => println!(
                "ok: {} ({n} task{})",
                path.display(),
                if n == 1 { "" } else { "s" }
            ),
            Err(e) => {
                e.print(color);
                failed += 1;
            }
        }
    }
    if failed > 0 {
        if args.manifests.len() > 1 {
            eprintln!(
                "{failed} of {} manifests have problems",
                args.manifests.len()
            );
        }
        Ok(exit_code::USAGE)
    } else {
        Ok(exit_code::SUCCESS)
    }
}

/// The lockfile is well-formed and, with `--locked`, pins every download; the task count.
fn lockfile_ok(mut plan: Plan, locked: bool, vars: &[String]) -> Result<usize, Error> {
    let (_, unpinned) = super::apply_lockfile(&mut plan, &|_| false)?;
    if locked {
        super::refuse_unlocked(&plan, &unpinned, vars)?;
    }
    let n = plan.pipeline.tasks.len();
    // The process ends soon: freeing 100,000 tasks one by one would cost more than the
    // checks of a small manifest.
    std::mem::forget(plan);
    Ok(n)
}
