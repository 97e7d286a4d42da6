//! CLI integration tests: real manifests in temp dirs, the real binary, real processes.

mod run;
mod services;
mod signals;
mod support;
