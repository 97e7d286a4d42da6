//! The run loop: ready queue, pools, retry, cancellation.
