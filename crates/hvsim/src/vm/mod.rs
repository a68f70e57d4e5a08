//! One simulated VM as every model sees it: its power state and its guest's MMIO pool.
//!
//! # Why one object
//! On a real host the VMBus channel, the emulated PCI device and guest memory all belong to one
//! VM: offers reach a guest and channels open only while its virtual processors run, and when
//! the VM stops its guest's VMBus driver, its vPCI bus and every address it claimed are gone
//! (the KMCL state model, `VmbChannelEnable` "the offer is visible to the guest", and the HCS
//! lifecycle: Microsoft's HCS and HDV reference pages in MicrosoftDocs/Virtualization-Documentation
//! `virtualization/api/hcs/`). The KMCL model, the HDV/vPCI model and the guest-memory model
//! therefore share one [`GuestVm`] instead of each keeping its own idea of the VM.
//!
//! The HDV model (`crate::hdv`) is the only one that changes the power state, because the HCS
//! calls that start, pause, resume and terminate a VM are HDV/HCS calls. Every other model
//! observes the changes ([`GuestVm::on_power_change`]) and reads the state and the pool.
//!
//! # Threads
//! Observers run on the thread that changed the power state, after the VM's lock is released.
//! The KMCL model is thread-local, so a test starts and stops its VMs on its own thread.

pub mod pool;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use pool::{
    Claim, ClaimError, ClaimOwner, ClaimRequest, GpaRange, MmioPool, highest_power_of_two_at_most,
};

/// The kind of guest operating system, each with its documented treatment of VMBus MMIO and
/// vPCI (the facts and their sources are in `docs/simulator.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestKind {
    /// A Linux guest: `hv_vmbus` reserves nothing for an offer's `mmio_megabytes` and never
    /// reads the optional amount; a channel's range exists only if the channel's own driver
    /// claims it (`vmbus_allocate_mmio`, its own size and alignment); pci-hyperv claims a
    /// config window and bridge windows from the same pool and writes the BARs itself, with
    /// memory decode off (`prepopulate_bars`).
    Linux,
    /// A Windows guest: the VMBus driver reserves the channel's MMIO for its child device
    /// through PnP before the client opens (`VmbChannelGetMmioSpace` is valid after Opened);
    /// whether it honours `MmioMegabytesOptional` is undocumented, so the model reserves only
    /// `MmioMegabytes` (strict), page-aligned (its alignment is undocumented; the weakest
    /// useful guarantee). vpci.sys places BARs in a separate PnP assignment.
    Windows,
}

/// The VM's power state (HCS compute-system states as the HDV model drives them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Power {
    /// Created, not started.
    Created,
    /// Its virtual processors run.
    Running,
    /// Paused (`HcsPauseComputeSystem`); the guest does nothing.
    Paused,
    /// The guest is being reset (a guest reboot or a host reset of a running VM): its state
    /// (VMBus connection, MMIO claims, vPCI programming) is gone, but the VM worker and the
    /// device hosts stay. Transient: the HDV model goes from Running to Resetting and back to
    /// Running in one call, so observers see the guest go away and come back.
    Resetting,
    /// Terminated (or shut down).
    Stopped,
    /// The VM worker died (an observed fast-fail, for instance); the VM is gone like a stopped
    /// one, and the reason is kept.
    Crashed,
}

impl Power {
    /// Whether the guest exists (started and not stopped or crashed).
    pub const fn guest_exists(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

/// A guest as a save keeps it ([`GuestVm::save`], [`GuestVm::restore`]).
#[derive(Clone, Debug)]
pub struct SavedGuest {
    /// The guest's kind.
    pub kind: GuestKind,
    pool: MmioPool,
    empty_pool: MmioPool,
    /// The offers its VMBus driver knew (host channel ids of the KMCL model).
    pub vmbus_offers: Vec<u32>,
}

impl SavedGuest {
    /// The MMIO claims the guest held.
    pub fn claims(&self) -> Vec<Claim> {
        self.pool.claims().to_vec()
    }
}

/// A change of [`Power`], as observers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerChange {
    /// Before.
    pub from: Power,
    /// After.
    pub to: Power,
}

type Observer = Arc<dyn Fn(&GuestVm, PowerChange) + Send + Sync>;

struct Inner {
    kind: GuestKind,
    power: Power,
    /// How many times the guest booted (entered Running from Created or Resetting).
    boots: u64,
    /// The offers the guest's VMBus driver knows, by the KMCL model's host channel id: state
    /// that lives in guest memory, so a save keeps it (the KMCL model keeps it current).
    vmbus_offers: Vec<u32>,
    /// A restored guest's VMBus state from the save, until the KMCL model consumes it.
    restored_vmbus: Option<Vec<u32>>,
    /// A restored guest not yet started: its start resumes the saved guest (no boot).
    restored: bool,
    crash_reason: Option<String>,
    pool: MmioPool,
    /// A copy of the pool as it was created, restored whenever the guest goes away.
    empty_pool: MmioPool,
    observers: Vec<Observer>,
}

/// One simulated VM. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct GuestVm {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for GuestVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("GuestVm")
            .field("kind", &inner.kind)
            .field("power", &inner.power)
            .finish_non_exhaustive()
    }
}

impl GuestVm {
    /// A created (not started) VM whose guest is `kind`, with the MMIO pool `pool`.
    pub fn new(kind: GuestKind, pool: MmioPool) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                kind,
                power: Power::Created,
                boots: 0,
                vmbus_offers: Vec::new(),
                restored_vmbus: None,
                restored: false,
                crash_reason: None,
                empty_pool: pool.clone(),
                pool,
                observers: Vec::new(),
            })),
        }
    }

    /// A created VM with the model's default pool ([`MmioPool::hyper_v_like`]).
    pub fn with_default_pool(kind: GuestKind) -> Self {
        Self::new(kind, MmioPool::hyper_v_like())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `self` and `other` are the same VM.
    pub fn same_vm(&self, other: &GuestVm) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The guest's kind.
    pub fn kind(&self) -> GuestKind {
        self.lock().kind
    }

    /// The power state.
    pub fn power(&self) -> Power {
        self.lock().power
    }

    /// How many times the guest booted: entered [`Power::Running`] from [`Power::Created`] or
    /// [`Power::Resetting`] (not from a pause). Guest-side views compare it to notice that the
    /// guest they knew is gone.
    pub fn boot_count(&self) -> u64 {
        self.lock().boots
    }

    /// The offers the guest's VMBus driver knows (host channel ids of the KMCL model).
    pub fn vmbus_offers(&self) -> Vec<u32> {
        self.lock().vmbus_offers.clone()
    }

    /// Records what the guest's VMBus driver knows (for the KMCL model).
    pub(crate) fn set_vmbus_offers(&self, offers: Vec<u32>) {
        self.lock().vmbus_offers = offers;
    }

    /// Takes a restored guest's saved VMBus state, once (for the KMCL model).
    pub(crate) fn take_restored_vmbus(&self) -> Option<Vec<u32>> {
        self.lock().restored_vmbus.take()
    }

    /// The guest's state as a save keeps it: its kind, its MMIO claims and its VMBus driver's
    /// offers (guest memory). Only meaningful while the guest exists.
    pub fn save(&self) -> SavedGuest {
        let inner = self.lock();
        SavedGuest {
            kind: inner.kind,
            pool: inner.pool.clone(),
            empty_pool: inner.empty_pool.clone(),
            vmbus_offers: inner.vmbus_offers.clone(),
        }
    }

    /// A new, created VM whose guest is `saved` (a restore): same kind, the saved claims, and
    /// the saved VMBus state pending for the KMCL model. It starts like any created VM.
    pub fn restore(saved: &SavedGuest) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                kind: saved.kind,
                power: Power::Created,
                boots: 0,
                vmbus_offers: saved.vmbus_offers.clone(),
                restored_vmbus: Some(saved.vmbus_offers.clone()),
                restored: true,
                crash_reason: None,
                empty_pool: saved.empty_pool.clone(),
                pool: saved.pool.clone(),
                observers: Vec::new(),
            })),
        }
    }

    /// Why the VM crashed, if it did.
    pub fn crash_reason(&self) -> Option<String> {
        self.lock().crash_reason.clone()
    }

    /// Registers `observer`, called after every power change (see the module docs on threads).
    pub fn on_power_change(
        &self,
        observer: impl Fn(&GuestVm, PowerChange) + Send + Sync + 'static,
    ) {
        self.lock().observers.push(Arc::new(observer));
    }

    /// Changes the power state and runs the observers (for the HDV model, which owns the
    /// HCS calls). When the guest stops existing, every claim in its pool goes with it.
    pub fn set_power(&self, to: Power) {
        self.set_power_inner(to, None);
    }

    /// The VM worker died: the VM is [`Power::Crashed`] with `reason` (for the HDV model).
    pub fn crash(&self, reason: impl Into<String>) {
        self.set_power_inner(Power::Crashed, Some(reason.into()));
    }

    fn set_power_inner(&self, to: Power, reason: Option<String>) {
        let (change, observers) = {
            let mut inner = self.lock();
            let from = inner.power;
            if from == to {
                return;
            }
            inner.power = to;
            if to == Power::Running && matches!(from, Power::Created | Power::Resetting) {
                if std::mem::take(&mut inner.restored) {
                    // A restored guest resumes where it was saved: not a boot.
                } else {
                    inner.boots += 1;
                }
            }
            if reason.is_some() {
                inner.crash_reason = reason;
            }
            if !to.guest_exists() {
                inner.pool = inner.empty_pool.clone();
            }
            (PowerChange { from, to }, inner.observers.clone())
        };
        for observer in observers {
            observer(self, change);
        }
    }

    /// Claims guest MMIO for `owner` (exclusive, first fit; see [`pool`]).
    pub fn claim(&self, owner: ClaimOwner, request: ClaimRequest) -> Result<GpaRange, ClaimError> {
        self.lock().pool.claim(owner, request)
    }

    /// Releases the claim of exactly `range`; false if there is none.
    pub fn release(&self, range: GpaRange) -> bool {
        self.lock().pool.release(range)
    }

    /// Releases every claim of `owner`; returns how many.
    pub fn release_owner(&self, owner: &ClaimOwner) -> usize {
        self.lock().pool.release_owner(owner)
    }

    /// The claim `owner` holds, if exactly one.
    pub fn claim_of(&self, owner: &ClaimOwner) -> Option<GpaRange> {
        self.lock().pool.claim_of(owner)
    }

    /// Every live claim, sorted by base.
    pub fn claims(&self) -> Vec<Claim> {
        self.lock().pool.claims().to_vec()
    }

    /// The pool's windows.
    pub fn pool_windows(&self) -> Vec<GpaRange> {
        self.lock().pool.windows().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn observers_see_each_change_once_and_a_gone_guest_frees_its_pool() {
        let vm = GuestVm::with_default_pool(GuestKind::Linux);
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        vm.on_power_change(move |vm, change| {
            assert_eq!(vm.power(), change.to, "observers run after the change");
            counter.fetch_add(1, Ordering::SeqCst);
        });
        vm.set_power(Power::Running);
        vm.set_power(Power::Running);
        assert_eq!(seen.load(Ordering::SeqCst), 1, "no change, no call");
        vm.claim(
            ClaimOwner::Other("x".into()),
            ClaimRequest::anywhere(4096, 4096),
        )
        .unwrap();
        assert_eq!(vm.claims().len(), 1);
        vm.crash("test");
        assert_eq!(vm.power(), Power::Crashed);
        assert_eq!(vm.crash_reason().as_deref(), Some("test"));
        assert!(vm.claims().is_empty(), "the guest's claims die with it");
        assert_eq!(seen.load(Ordering::SeqCst), 2);
    }
}
