//! The documented exit codes (SPEC §1), in one place.

/// Every selected task succeeded or was cached.
pub const SUCCESS: u8 = 0;
/// A task failed.
pub const TASK_FAILED: u8 = 1;
/// Usage error, invalid manifest, unknown target or task; nothing ran.
pub const USAGE: u8 = 2;
/// Interrupted by SIGHUP (the terminal closed).
pub const SIGHUP: u8 = 129;
/// Interrupted by SIGINT.
pub const SIGINT: u8 = 130;
/// Interrupted by SIGTERM.
pub const SIGTERM: u8 = 143;
