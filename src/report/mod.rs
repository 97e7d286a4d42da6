//! Event sinks: console, plain lines, JSON report, JUnit, GitHub Actions.
