//! Past-tense events from the scheduler, consumed by the reporters.
