//! One module per subcommand; each returns the process exit code.

use crate::cli::Command;

/// Runs one subcommand and returns its exit code.
pub fn dispatch(command: Command) -> u8 {
    match command {
        Command::Run(_) => todo_exit("run"),
        Command::Plan(_) => todo_exit("plan"),
        Command::Check(_) => todo_exit("check"),
        Command::List(_) => todo_exit("list"),
        Command::Explain(_) => todo_exit("explain"),
        Command::Cache(_) => todo_exit("cache"),
        Command::Schema => todo_exit("schema"),
        Command::Completions(_) => todo_exit("completions"),
    }
}

fn todo_exit(what: &str) -> u8 {
    eprintln!("taskrun: `{what}` is not built yet");
    crate::exit_code::USAGE
}
