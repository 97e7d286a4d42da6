//! `taskrun check`: validate manifests for CI; every problem of every manifest, exit 0 or 2.

use crate::cli::CheckArgs;
use crate::exit_code;
use crate::plan::Plan;

/// Validates each manifest (and its lockfile) and prints every problem.
pub fn run(args: CheckArgs) -> u8 {
    let color = super::stderr_color(args.color);
    let mut failed = 0;
    for path in &args.manifests {
        let checked = super::load_pipeline(path, &args.vars, color)
            .and_then(|p| super::plan_pipeline(path, &[], p))
            .and_then(|plan| lockfile_ok(plan, color, args.locked));
        match checked {
            Ok(n) => println!(
                "ok: {} ({n} task{})",
                path.display(),
                if n == 1 { "" } else { "s" }
            ),
            Err(_) => failed += 1,
        }
    }
    if failed > 0 {
        if args.manifests.len() > 1 {
            eprintln!(
                "{failed} of {} manifests have problems",
                args.manifests.len()
            );
        }
        exit_code::USAGE
    } else {
        exit_code::SUCCESS
    }
}

/// The lockfile is well-formed and, with `--locked`, pins every download; the task count.
fn lockfile_ok(mut plan: Plan, color: bool, locked: bool) -> Result<usize, u8> {
    let (_, unpinned) = super::apply_lockfile(&mut plan, color, &|_| false)?;
    if locked {
        super::refuse_unlocked(&plan, &unpinned)?;
    }
    let n = plan.pipeline.tasks.len();
    // The process ends soon: freeing 100,000 tasks one by one would cost more than the
    // checks of a small manifest.
    std::mem::forget(plan);
    Ok(n)
}
