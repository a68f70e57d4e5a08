//! What the demo rests on but cannot verify, in plain words.
//!
//! The simulator models documented behaviour; where the demo needs something no source states,
//! it goes on, but says so first, so nobody reads the result as proof of it. `docs/simulator.md`
//! ("What the demo assumes") and the README's verified-where table list the same items.

/// The host side reads the shared bytes through a simulator-only view.
pub const HOST_VIEW: &str = "SIMULATOR-ONLY: the host reads and writes the shared bytes \
    through the simulator's view of the driver's own section objects. The Windows driver maps \
    no view of its sections; this view exists only here, to prove the bytes are the same.";

/// The documented HDV semantics hold: the mapping takes effect and unmapped BAR pages are
/// intercepted (the one public run observed neither; `--observed-nested-build` reproduces it).
pub const MAPPING_TAKES_EFFECT: &str = "ASSUMPTION: a section-backed range the device host \
    creates after the guest turned memory decode on takes effect, and BAR accesses no range \
    covers reach the device host, as Microsoft's HDV documentation describes. The one public run \
    (Windows 10.0.26100, nested) observed neither; --observed-nested-build reproduces that run.";

/// A BAR outside the device's bridge window is accepted by the platform.
pub const BAR_OUTSIDE_WINDOW: &str = "ASSUMPTION: Hyper-V's virtual PCI accepts a BAR the \
    guest placed outside the bridge window its vPCI driver claimed (here: inside the range its \
    channel driver claimed). Whether it checks BAR addresses is unknown.";

/// A consumer's view and the guest's BAR are the same memory.
pub const CONSUMER_VIEW_COHERENT: &str = "ASSUMPTION: a host application's view of a region \
    (MapViewOfFile of the section handle the driver opened in its process) and the guest's \
    BAR pages HDV backs with the same section (HdvCreateSectionBackedMmioRange) are the same \
    memory, so what one writes the other reads without a copy. Documented for views of one \
    section object in general; not verified for HDV's section-backed ranges.";

/// The consumer's doorbell wait is modelled by polling.
pub const CONSUMER_WAIT: &str = "SIMULATOR-ONLY: the host application's wait for the guest's \
    doorbell polls the simulated event object (WaitForSingleObject on Windows); the event is \
    the one the driver signals (KeSetEvent), counted by the object-manager model.";
