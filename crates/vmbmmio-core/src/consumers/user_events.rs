//! Event objects a host consumer hands the driver for doorbells (SET_DOORBELL_EVENT,
//! docs/ioctl.md): referenced from a user handle in the caller's process, signalled when the
//! guest rings, released exactly once.
//!
//! The driver calls, in the glue (`glue::events`):
//! - reference: `ObReferenceObjectByHandle(handle, EVENT_MODIFY_STATE, *ExEventObjectType,
//!   UserMode, &object, NULL)` (Microsoft, "ObReferenceObjectByHandle function (wdm.h)"): the
//!   handle is looked up in the **current** process's table with an access check against the
//!   handle's granted access (`UserMode`), and the object must be an event. A bad handle comes
//!   back as that call's NTSTATUS (`STATUS_INVALID_HANDLE`, `STATUS_OBJECT_TYPE_MISMATCH`,
//!   `STATUS_ACCESS_DENIED`), which the IOCTL completes with.
//! - signal: `KeSetEvent(object, IO_NO_INCREMENT, FALSE)` (<= DISPATCH_LEVEL; with `Wait`
//!   FALSE it does not block and may be called under a spin lock).
//! - release: `ObDereferenceObject(object)` (<= DISPATCH_LEVEL; the last reference may free
//!   the event object, so the driver releases outside its spin lock anyway).
//!
//! The driver keeps the object pointer, never the handle: the consumer may close its handle
//! at once; the event lives until the driver's reference is released.

use kmcl::raw::NTSTATUS;

/// `EVENT_MODIFY_STATE` (winnt.h): the right to set or reset an event. The one right the
/// driver needs on a consumer's event.
pub const EVENT_MODIFY_STATE: u32 = 0x0002;

/// The driver's reference to one event object: the object pointer on Windows, the object's id
/// in the simulator. Not `Clone`: released exactly once, by [`UserEvents::release`]. Plain data
/// (no generic parameter), so the session's doorbell table under the event lock stays one
/// concrete type whatever the platform.
#[derive(Debug, PartialEq, Eq)]
pub struct EventRef(u64);

impl EventRef {
    /// A reference the backend just took. Only a [`UserEvents`] implementation makes one.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The backend's value (the object pointer or id); it stays the driver's reference.
    pub const fn raw(&self) -> u64 {
        self.0
    }
}

/// The event calls behind SET_DOORBELL_EVENT and the doorbells.
///
/// `Clone`: the channel's guest port keeps a copy to signal from a KMCL callback; every clone is
/// the same kernel (the glue's backend is a stateless ZST, the simulator's shares its state).
pub trait UserEvents: Clone + Send + Sync + 'static {
    /// References the event behind `handle` in the **current** process, checked as a user-mode
    /// access for [`EVENT_MODIFY_STATE`]; the NTSTATUS of the refusal otherwise (a zero, closed
    /// or kernel handle: `STATUS_INVALID_HANDLE`; not an event: `STATUS_OBJECT_TYPE_MISMATCH`;
    /// no `EVENT_MODIFY_STATE`: `STATUS_ACCESS_DENIED`).
    ///
    /// IRQL: PASSIVE_LEVEL, in the requesting process's context.
    fn reference(&self, handle: u64) -> Result<EventRef, NTSTATUS>;

    /// Sets the event (`KeSetEvent(.., FALSE)`): does not block.
    ///
    /// IRQL: <= DISPATCH_LEVEL (the driver calls it under the session's event lock).
    fn signal(&self, event: &EventRef);

    /// Releases the reference (`ObDereferenceObject`). The driver calls it without any spin
    /// lock held.
    ///
    /// IRQL: <= DISPATCH_LEVEL (PASSIVE_LEVEL in practice).
    fn release(&self, event: EventRef);
}
