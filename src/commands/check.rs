//! `taskrun check`: validate manifests for CI; every problem of every manifest, exit 0 or 2.

use crate::cli::CheckArgs;
use crate::exit_code;

/// Validates each manifest and prints every problem.
pub fn run(args: CheckArgs) -> u8 {
    let color = super::stderr_color(args.color);
    let mut failed = 0;
    for path in &args.manifests {
        match super::load_pipeline(path, &args.vars, color) {
            Ok(p) => println!(
                "ok: {} ({} task{})",
                path.display(),
                p.tasks.len(),
                if p.tasks.len() == 1 { "" } else { "s" }
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
