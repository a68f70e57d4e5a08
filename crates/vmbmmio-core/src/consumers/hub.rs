//! One session's doorbell table ([`DoorbellHub`]): who is attached to which region, what the
//! guest rang for them, their events and their rate buckets.
//!
//! It lives in the session's [`crate::guest::GuestShared`], behind the session's **event lock**,
//! so the channel's packet handler reaches it without the table lock (module docs of
//! [`crate::control`]). Every method is bounded (at most [`MAX_SUBSCRIBERS`] slots), allocates
//! nothing and makes no call out but the signal of an event (`KeSetEvent(.., FALSE)`,
//! <= DISPATCH_LEVEL, does not block; passed in as a closure). Event references leave the
//! table by value ([`EventRef`]) and are released by the caller **after** the event lock.
//!
//! The slot table is allocated once, at the session's first attachment, outside the lock
//! ([`HubTable::new`], [`DoorbellHub::install`]): a session nobody attaches to pays nothing.

use alloc::boxed::Box;

use kmcl::fallible::{AllocError, try_box};

use super::rate::TokenBucket;
use super::user_events::EventRef;

/// Most attachments per session (docs/ioctl.md, ATTACH_REGION quotas).
pub const MAX_SUBSCRIBERS: usize = 64;

/// One attachment's doorbell state.
#[derive(Debug)]
pub struct Subscriber {
    /// The attachment's id.
    pub attachment: u64,
    /// The region it is attached to.
    pub region: u32,
    /// The consumer's event, if registered.
    event: Option<EventRef>,
    /// Guest doorbells since the last take (saturating).
    pub count: u64,
    /// The newest guest doorbell's value (0: none ever).
    pub last_value: u64,
    /// RING_GUEST's rate limit.
    bucket: TokenBucket,
    /// RING_GUEST refused by the rate limit.
    pub refused_to_guest: u64,
}

/// The slot table (allocated at the first attachment).
#[derive(Debug)]
pub struct HubTable {
    slots: [Option<Subscriber>; MAX_SUBSCRIBERS],
}

impl HubTable {
    /// An empty table, allocated fallibly.
    ///
    /// IRQL: PASSIVE_LEVEL (allocates; never under the event lock).
    pub fn new() -> Result<Box<Self>, AllocError> {
        try_box(Self {
            slots: [const { None }; MAX_SUBSCRIBERS],
        })
    }

    fn find(&mut self, attachment: u64) -> Option<&mut Subscriber> {
        self.slots
            .iter_mut()
            .flatten()
            .find(|s| s.attachment == attachment)
    }
}

/// What TAKE_DOORBELLS returns for one attachment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Taken {
    /// Guest doorbells for the region since the last take.
    pub count: u64,
    /// The newest one's value (0 if none ever).
    pub last_value: u64,
    /// Guest doorbells refused by the session's rate limit (whole session).
    pub refused_from_guest: u64,
    /// This attachment's RING_GUEST refused.
    pub refused_to_guest: u64,
}

/// Why the hub refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubError {
    /// The session closed: its doorbells are over.
    Closed,
    /// No such attachment in this session (never: the table lock checked it).
    Unknown,
    /// The table has no free slot, or was not installed.
    Full,
    /// RING_GUEST beyond the attachment's rate (counted).
    RateLimited,
}

/// The session's doorbells, under the event lock.
#[derive(Debug, Default)]
pub struct DoorbellHub {
    table: Option<Box<HubTable>>,
    /// Guest doorbells refused by the guest's rate limit.
    pub refused_from_guest: u64,
    /// Guest doorbells accepted.
    pub from_guest: u64,
    /// Rings to the guest accepted.
    pub to_guest: u64,
    closed: bool,
}

impl DoorbellHub {
    /// An empty hub (no table yet).
    pub const fn new() -> Self {
        Self {
            table: None,
            refused_from_guest: 0,
            from_guest: 0,
            to_guest: 0,
            closed: false,
        }
    }

    /// Whether the slot table exists.
    pub const fn installed(&self) -> bool {
        self.table.is_some()
    }

    /// Whether the session closed.
    pub const fn is_closed(&self) -> bool {
        self.closed
    }

    /// Installs `table` if none is; hands it back otherwise (the caller frees it after the
    /// lock).
    pub fn install(&mut self, table: Box<HubTable>) -> Option<Box<HubTable>> {
        if self.table.is_some() {
            return Some(table);
        }
        self.table = Some(table);
        None
    }

    /// A new attachment to `region`, its RING_GUEST bucket full at `now`.
    pub fn subscribe(&mut self, attachment: u64, region: u32, now: u64) -> Result<(), HubError> {
        if self.closed {
            return Err(HubError::Closed);
        }
        let table = self.table.as_mut().ok_or(HubError::Full)?;
        let slot = table
            .slots
            .iter_mut()
            .find(|slot| slot.is_none())
            .ok_or(HubError::Full)?;
        *slot = Some(Subscriber {
            attachment,
            region,
            event: None,
            count: 0,
            last_value: 0,
            bucket: TokenBucket::new(now),
            refused_to_guest: 0,
        });
        Ok(())
    }

    /// The attachment leaves (DETACH_REGION, the consumer's file cleanup): its event comes
    /// back for the caller to release after the lock.
    pub fn unsubscribe(&mut self, attachment: u64) -> Option<EventRef> {
        let table = self.table.as_mut()?;
        let slot = table
            .slots
            .iter_mut()
            .find(|slot| slot.as_ref().is_some_and(|s| s.attachment == attachment))?;
        slot.take().and_then(|s| s.event)
    }

    /// SET_DOORBELL_EVENT: `event` replaces the attachment's event; the old one comes back to
    /// release after the lock. On refusal `event` comes back too.
    pub fn set_event(
        &mut self,
        attachment: u64,
        event: Option<EventRef>,
    ) -> Result<Option<EventRef>, (HubError, Option<EventRef>)> {
        if self.closed {
            return Err((HubError::Closed, event));
        }
        match self.table.as_mut().and_then(|t| t.find(attachment)) {
            Some(subscriber) => Ok(core::mem::replace(&mut subscriber.event, event)),
            None => Err((HubError::Unknown, event)),
        }
    }

    /// TAKE_DOORBELLS: the attachment's count since the last take (reset) and the counters.
    pub fn take(&mut self, attachment: u64) -> Result<Taken, HubError> {
        if self.closed {
            return Err(HubError::Closed);
        }
        let refused_from_guest = self.refused_from_guest;
        let subscriber = self
            .table
            .as_mut()
            .and_then(|t| t.find(attachment))
            .ok_or(HubError::Unknown)?;
        let taken = Taken {
            count: subscriber.count,
            last_value: subscriber.last_value,
            refused_from_guest,
            refused_to_guest: subscriber.refused_to_guest,
        };
        subscriber.count = 0;
        Ok(taken)
    }

    /// RING_GUEST's rate limit for the attachment at `now`: `Ok(region)` if allowed.
    pub fn ring_allowed(&mut self, attachment: u64, now: u64) -> Result<u32, HubError> {
        if self.closed {
            return Err(HubError::Closed);
        }
        let subscriber = self
            .table
            .as_mut()
            .and_then(|t| t.find(attachment))
            .ok_or(HubError::Unknown)?;
        if subscriber.bucket.try_take(now) {
            self.to_guest = self.to_guest.saturating_add(1);
            Ok(subscriber.region)
        } else {
            subscriber.refused_to_guest = subscriber.refused_to_guest.saturating_add(1);
            Err(HubError::RateLimited)
        }
    }

    /// A guest DOORBELL for `region` with `value`, admitted by the guest's rate limit: every
    /// subscriber of the region counts it, keeps the value and has its event signalled
    /// (`signal`: `KeSetEvent`, <= DISPATCH_LEVEL). Returns how many subscribers heard it.
    pub fn guest_rang(&mut self, region: u32, value: u64, signal: impl Fn(&EventRef)) -> usize {
        self.from_guest = self.from_guest.saturating_add(1);
        let Some(table) = self.table.as_mut() else {
            return 0;
        };
        let mut heard = 0usize;
        for subscriber in table.slots.iter_mut().flatten() {
            if subscriber.region == region {
                subscriber.count = subscriber.count.saturating_add(1);
                subscriber.last_value = value;
                if let Some(event) = &subscriber.event {
                    signal(event);
                }
                heard = heard.saturating_add(1);
            }
        }
        heard
    }

    /// A guest DOORBELL refused by the guest's rate limit.
    pub fn guest_refused(&mut self) {
        self.refused_from_guest = self.refused_from_guest.saturating_add(1);
    }

    /// The session closes: every registered event is signalled once (the consumer wakes and
    /// finds `STATUS_VIRTUAL_CIRCUIT_CLOSED`), and the whole table comes back, to release its
    /// events and free it **after** the lock ([`ClosedHub::release`]). Later requests get
    /// [`HubError::Closed`].
    pub fn close(&mut self, signal: impl Fn(&EventRef)) -> ClosedHub {
        self.closed = true;
        if let Some(table) = self.table.as_ref() {
            for event in table
                .slots
                .iter()
                .flatten()
                .filter_map(|s| s.event.as_ref())
            {
                signal(event);
            }
        }
        ClosedHub(self.table.take())
    }

    /// Subscribers now (tests).
    pub fn subscribers(&self) -> usize {
        self.table
            .as_ref()
            .map_or(0, |t| t.slots.iter().flatten().count())
    }

    /// Registered events now (tests).
    pub fn events(&self) -> usize {
        self.table.as_ref().map_or(0, |t| {
            t.slots
                .iter()
                .flatten()
                .filter(|s| s.event.is_some())
                .count()
        })
    }
}

/// A closed session's doorbell table, out of the lock.
#[must_use = "the events' references must be released"]
pub struct ClosedHub(Option<Box<HubTable>>);

impl ClosedHub {
    /// Releases every event reference (`release`: `ObDereferenceObject`) and frees the table;
    /// returns how many were released.
    ///
    /// IRQL: PASSIVE_LEVEL (frees), without the event lock.
    pub fn release(self, release: impl Fn(EventRef)) -> usize {
        let mut released = 0usize;
        if let Some(mut table) = self.0 {
            for slot in table.slots.iter_mut() {
                if let Some(event) = slot.take().and_then(|s| s.event) {
                    release(event);
                    released = released.saturating_add(1);
                }
            }
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use core::cell::RefCell;

    fn hub() -> DoorbellHub {
        let mut hub = DoorbellHub::new();
        assert!(hub.install(HubTable::new().unwrap()).is_none());
        hub
    }

    #[test]
    fn guest_rings_reach_the_regions_subscribers_only() {
        let mut hub = hub();
        hub.subscribe(1, 0, 0).unwrap();
        hub.subscribe(2, 1, 0).unwrap();
        hub.subscribe(3, 1, 0).unwrap();
        assert!(
            hub.set_event(3, Some(EventRef::from_raw(30)))
                .unwrap()
                .is_none()
        );
        let signalled = RefCell::new(Vec::new());
        assert_eq!(
            hub.guest_rang(1, 7, |e| signalled.borrow_mut().push(e.raw())),
            2
        );
        assert_eq!(
            hub.guest_rang(1, 9, |e| signalled.borrow_mut().push(e.raw())),
            2
        );
        assert_eq!(*signalled.borrow(), [30, 30]);
        let taken = hub.take(2).unwrap();
        assert_eq!((taken.count, taken.last_value), (2, 9));
        assert_eq!(hub.take(2).unwrap().count, 0, "reset by the take");
        assert_eq!(hub.take(2).unwrap().last_value, 9, "the value stays");
        assert_eq!(hub.take(1).unwrap(), Taken::default());
        let events = RefCell::new(Vec::new());
        let closed = hub.close(|e| signalled.borrow_mut().push(e.raw()));
        assert_eq!(closed.release(|e| events.borrow_mut().push(e.raw())), 1);
        assert_eq!(*events.borrow(), [30]);
        assert_eq!(*signalled.borrow(), [30, 30, 30], "one final signal");
        assert_eq!(hub.take(2), Err(HubError::Closed));
        assert_eq!(hub.subscribe(4, 0, 0), Err(HubError::Closed));
    }

    #[test]
    fn re_registering_hands_the_old_event_back() {
        let mut hub = hub();
        hub.subscribe(1, 0, 0).unwrap();
        assert!(
            hub.set_event(1, Some(EventRef::from_raw(5)))
                .unwrap()
                .is_none()
        );
        assert_eq!(
            hub.set_event(1, Some(EventRef::from_raw(6))).unwrap(),
            Some(EventRef::from_raw(5))
        );
        assert_eq!(hub.set_event(1, None).unwrap(), Some(EventRef::from_raw(6)));
        assert_eq!(
            hub.set_event(9, Some(EventRef::from_raw(7))),
            Err((HubError::Unknown, Some(EventRef::from_raw(7))))
        );
        hub.set_event(1, Some(EventRef::from_raw(8))).unwrap();
        assert_eq!(hub.unsubscribe(1), Some(EventRef::from_raw(8)));
        assert_eq!(hub.subscribers(), 0);
    }

    #[test]
    fn rings_to_the_guest_are_rate_limited_per_attachment() {
        let mut hub = hub();
        hub.subscribe(1, 2, 0).unwrap();
        hub.subscribe(2, 3, 0).unwrap();
        for _ in 0..super::super::BURST {
            assert_eq!(hub.ring_allowed(1, 0), Ok(2));
        }
        assert_eq!(hub.ring_allowed(1, 0), Err(HubError::RateLimited));
        assert_eq!(
            hub.ring_allowed(2, 0),
            Ok(3),
            "another attachment is unaffected"
        );
        assert_eq!(hub.take(1).unwrap().refused_to_guest, 1);
        assert_eq!(
            hub.ring_allowed(1, super::super::rate::TICKS_PER_TOKEN),
            Ok(2)
        );
    }

    #[test]
    fn the_table_holds_the_session_quota() {
        let mut hub = DoorbellHub::new();
        assert_eq!(hub.subscribe(1, 0, 0), Err(HubError::Full), "no table yet");
        let spare = HubTable::new().unwrap();
        assert!(hub.install(HubTable::new().unwrap()).is_none());
        assert!(hub.install(spare).is_some(), "only one table");
        for id in 0..MAX_SUBSCRIBERS as u64 {
            hub.subscribe(id + 1, 0, 0).unwrap();
        }
        assert_eq!(hub.subscribe(99, 0, 0), Err(HubError::Full));
        let _ = hub.close(|_| {}).release(|_| {});
    }
}
