//! The `taskrun` binary: everything lives in the library; see [`taskrun::run`].

fn main() -> std::process::ExitCode {
    taskrun::run(std::env::args_os())
}
