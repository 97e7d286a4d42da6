//! Fan-out (SPEC §9, issue 12 points 1-5 and 8) through the real binary: expansion, names,
//! dependencies and targets, quoting of inserted values, produced items, reserved paths, the
//! plan and summary at scale, and the cache per instance, with real files in temp dirs and a
//! real HTTP server on 127.0.0.1.

#[allow(dead_code)]
#[path = "../support/bytes.rs"]
mod bytes;
#[path = "../support/fault_server.rs"]
mod fault_server;
#[path = "../support/served.rs"]
mod served;
#[path = "../support/workspace.rs"]
mod workspace;

mod cache;
mod expand_after;
mod expand_after_plan;
mod expansion;
mod item_files;
mod item_pins;
mod names;
mod produced;
mod quoting;
mod readability;
mod support;
