//! Host consumers (issue 14, docs/host-consumers.md): other host processes that attach to a
//! running VM's named region and exchange doorbells with the guest.
//!
//! # The pieces
//! - [`clock`]: the platform's monotonic clock (100 ns), for the rate limits;
//! - [`user_events`]: the consumer's event objects, referenced, signalled and released by the
//!   platform (`ObReferenceObjectByHandle`, `KeSetEvent`, `ObDereferenceObject`);
//! - [`hub`]: each session's doorbell table, under the session's event lock;
//! - [`rate`]: the token bucket (burst 64, 10 000 per second) per guest and per attachment.
//!
//! Both platform pieces are behind traits the glue implements with wdk-sys and `hvsim`
//! implements in tests, like [`crate::sections::SectionBackend`].

pub mod clock;
pub mod hub;
pub mod rate;
pub mod user_events;

pub use clock::{Clock, TICKS_PER_SECOND};
pub use hub::{ClosedHub, DoorbellHub, HubError, HubTable, MAX_SUBSCRIBERS, Taken};
pub use rate::{BURST, RATE_PER_SECOND, TokenBucket};
pub use user_events::{EVENT_MODIFY_STATE, EventRef, UserEvents};
