//! The VMBus ring buffer (placeholder; issue 11).
