//! The driver's VMBus server channel object: one per target VM.
//!
//! Filled by the channel issue: it owns the MMIO plan, the KMCL channel and its state, handles
//! the state-change callbacks (Opened, Started, PostStarted, Suspend, Closed) and hands guest
//! packets to the control protocol.
