//! The emulated PCI device: configuration space, `GetDetails`, and intercepted BAR accesses
//! served from views of the driver's sections.
//!
//! HDV calls these callbacks on its own threads (hdv.md §3.7), so all state sits behind one
//! mutex. The intercepted-memory path exists because the section-backed mapping is not
//! guaranteed to take effect (hdv.md §3.3, observed): guest accesses that reach
//! `Read/WriteInterceptedMemory` are served from the device host's view of the same section,
//! so the bytes stay right, and they are counted per BAR and per region, because every such
//! access means the fast path is not in effect for that page.
//!
//! The emulator is also one of the two placement sources (`placement`): when the guest's write
//! to the command register or the BAR changes what configuration space shows, the emulator
//! reports the new placement to its [`PlacementSignal`]. A platform that handles the BAR
//! registers itself (observed, hdv.md §3.3) never forwards those writes, and then this source
//! stays silent; the sequence does not depend on it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::callbacks::{PCI_BAR_COUNT, PciDeviceCallbacks, PciPnpId};
use crate::hresult::HResult;
use crate::layout::BarLayout;
use crate::pci::ConfigSpace;
use crate::placement::{BarPlacement, PlacementSignal, PlacementSource};
use crate::views::SectionView;
use vmbmmio_proto::pci_cap::Pairing;

/// A lifecycle callback, in the order HDV made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// `Initialize`.
    Initialize,
    /// `SetConfiguration`.
    SetConfiguration,
    /// `GetDetails`.
    GetDetails,
    /// `Start`.
    Start,
    /// `Stop`.
    Stop,
    /// `Teardown`.
    Teardown,
}

/// Intercepted accesses that reached the emulator.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InterceptCounts {
    /// Reads per BAR selector.
    pub reads: [u64; PCI_BAR_COUNT],
    /// Writes per BAR selector.
    pub writes: [u64; PCI_BAR_COUNT],
    /// Accesses (reads + writes) that touched each region of the layout.
    pub per_region: Vec<u64>,
    /// Accesses refused: bad length, bad BAR, out of bounds, or no view to serve them.
    pub refused: u64,
}

impl InterceptCounts {
    /// Reads plus writes on BAR `bar`.
    pub fn total(&self, bar: u8) -> u64 {
        let index = usize::from(bar);
        self.reads.get(index).copied().unwrap_or(0) + self.writes.get(index).copied().unwrap_or(0)
    }
}

struct State {
    config: ConfigSpace,
    layout: Option<BarLayout>,
    views: Vec<Option<Arc<dyn SectionView>>>,
    configuration: Vec<String>,
    events: Vec<LifecycleEvent>,
    counts: InterceptCounts,
    /// The placement configuration space showed at the last report.
    reported_placement: Option<BarPlacement>,
}

/// The device's emulator: the context object behind the `HDV_PCI_DEVICE_INTERFACE` callbacks.
pub struct Emulator {
    state: Mutex<State>,
    placement: PlacementSignal,
}

/// Where the VM is in its life, as the emulator's lifecycle callbacks tell it (hdv.md §3.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmLifecycle {
    /// No `Initialize` yet: the VM was not powered on.
    NotStarted,
    /// `Initialize` came and `Teardown` did not: the VM is powered on (running, paused or
    /// stopping).
    PoweredOn,
    /// `Teardown` came: the VM was cleaned up.
    TornDown,
}

impl Emulator {
    /// An emulator reporting `id`, with its 64-bit BAR at `bar_index` (even, at most 4). The
    /// BAR stays unimplemented until [`Emulator::set_layout`].
    pub fn new(id: PciPnpId, bar_index: u8) -> Self {
        Self {
            state: Mutex::new(State {
                config: ConfigSpace::new(id, bar_index),
                layout: None,
                views: Vec::new(),
                configuration: Vec::new(),
                events: Vec::new(),
                counts: InterceptCounts::default(),
                reported_placement: None,
            }),
            placement: PlacementSignal::new(),
        }
    }

    /// Exposes the pairing capability (the channel's identity) in configuration space. Called
    /// before the VM starts, so the guest finds it at its first enumeration.
    pub fn set_pairing(&self, pairing: &Pairing) {
        self.lock().config.set_pairing(pairing);
    }

    /// The placement inbox this emulator reports configuration-space changes to.
    pub fn placement_signal(&self) -> &PlacementSignal {
        &self.placement
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not stop the device from answering the VM.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sizes the BAR from the driver's layout; regions get no view until attached.
    pub fn set_layout(&self, layout: BarLayout) {
        let mut state = self.lock();
        state.config.set_bar_size(layout.bar_size());
        state.views = vec![None; layout.regions().len()];
        state.counts.per_region = vec![0; layout.regions().len()];
        self.placement.set_bar_size(layout.bar_size());
        state.layout = Some(layout);
    }

    /// Lets intercepted accesses to `region` reach `view`. Returns false if there is no such
    /// region.
    pub fn attach_view(&self, region: usize, view: Arc<dyn SectionView>) -> bool {
        match self.lock().views.get_mut(region) {
            Some(slot) => {
                *slot = Some(view);
                true
            }
            None => false,
        }
    }

    /// Stops serving `region` from its view and gives the emulator's reference back.
    pub fn detach_view(&self, region: usize) -> Option<Arc<dyn SectionView>> {
        self.lock().views.get_mut(region).and_then(Option::take)
    }

    /// The lifecycle callbacks received so far, in order.
    pub fn events(&self) -> Vec<LifecycleEvent> {
        self.lock().events.clone()
    }

    /// Whether `Start` was called (the VM's processors run or ran).
    pub fn started(&self) -> bool {
        self.lock().events.contains(&LifecycleEvent::Start)
    }

    /// Whether `Teardown` was called (the VM was cleaned up).
    pub fn torn_down(&self) -> bool {
        self.lock().events.contains(&LifecycleEvent::Teardown)
    }

    /// Where the VM is in its life.
    pub fn vm_lifecycle(&self) -> VmLifecycle {
        let state = self.lock();
        if state.events.contains(&LifecycleEvent::Teardown) {
            VmLifecycle::TornDown
        } else if state.events.contains(&LifecycleEvent::Initialize) {
            VmLifecycle::PoweredOn
        } else {
            VmLifecycle::NotStarted
        }
    }

    /// The `Configuration` strings received through `SetConfiguration`.
    pub fn configuration(&self) -> Vec<String> {
        self.lock().configuration.clone()
    }

    /// A copy of the configuration space as the guest sees it now.
    pub fn config_space(&self) -> ConfigSpace {
        self.lock().config.clone()
    }

    /// The intercept counters (the fast path's health signal).
    pub fn intercepts(&self) -> InterceptCounts {
        self.lock().counts.clone()
    }

    fn record(&self, event: LifecycleEvent) {
        self.lock().events.push(event);
    }

    fn access(&self, bar: u32, offset: u64, buffer: Access<'_>) -> Result<(), HResult> {
        let mut state = self.lock();
        let state = &mut *state;
        let counters = match buffer {
            Access::Read(_) => &mut state.counts.reads,
            Access::Write(_) => &mut state.counts.writes,
        };
        if let Some(slot) = usize::try_from(bar)
            .ok()
            .and_then(|bar| counters.get_mut(bar))
        {
            *slot += 1;
        }
        let result = serve(state, bar, offset, buffer);
        if result.is_err() {
            state.counts.refused += 1;
        }
        result
    }
}

/// The buffer of one intercepted access.
enum Access<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Access<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Read(buffer) => buffer.len(),
            Self::Write(buffer) => buffer.len(),
        }
    }
}

/// Serves one intercepted access from the views (hdv.md §3.7: `length` is 1, 2, 4 or 8).
fn serve(state: &mut State, bar: u32, offset: u64, mut buffer: Access<'_>) -> Result<(), HResult> {
    let len = buffer.len();
    let refused = if !matches!(len, 1 | 2 | 4 | 8) || bar != u32::from(state.config.bar_index()) {
        Some(HResult::E_INVALIDARG)
    } else {
        match &state.layout {
            None => Some(HResult::E_UNEXPECTED),
            Some(layout) => match offset.checked_add(len as u64) {
                Some(end) if end <= layout.bar_size() => None,
                _ => Some(HResult::E_INVALIDARG),
            },
        }
    };
    if let Some(error) = refused {
        if let Access::Read(out) = &mut buffer {
            // What a refused read returns: all ones, like a read nobody claims.
            out.fill(0xFF);
        }
        return Err(error);
    }
    let Some(layout) = &state.layout else {
        return Err(HResult::E_UNEXPECTED);
    };
    let mut done = 0usize;
    let mut result = Ok(());
    while done < len {
        let at = offset + done as u64;
        let remaining = (len - done) as u64;
        let Some((region, inner)) = layout.locate(at) else {
            // Skip padding up to the next region or the end of the access.
            let next = layout
                .regions()
                .iter()
                .map(|r| r.offset)
                .filter(|&o| o > at)
                .min();
            let step = next.map_or(remaining, |next| (next - at).min(remaining)) as usize;
            // BAR bytes outside every region (the power-of-two padding) read 0.
            if let Access::Read(out) = &mut buffer
                && let Some(part) = out.get_mut(done..done + step)
            {
                part.fill(0);
            }
            done += step;
            continue;
        };
        let size = layout.regions().get(region).map_or(0, |r| r.size);
        let step = (size - inner).min(remaining) as usize;
        if let Some(count) = state.counts.per_region.get_mut(region) {
            *count += 1;
        }
        let view = state.views.get(region).and_then(Option::as_ref);
        let outcome = match (&mut buffer, view) {
            (_, None) => Err(HResult::E_UNEXPECTED),
            (Access::Read(out), Some(view)) => match out.get_mut(done..done + step) {
                Some(part) => view.read(inner, part).map_err(|_| HResult::E_UNEXPECTED),
                None => Err(HResult::E_UNEXPECTED),
            },
            (Access::Write(data), Some(view)) => match data.get(done..done + step) {
                Some(part) => view.write(inner, part).map_err(|_| HResult::E_UNEXPECTED),
                None => Err(HResult::E_UNEXPECTED),
            },
        };
        if outcome.is_err() {
            if let Access::Read(out) = &mut buffer
                && let Some(part) = out.get_mut(done..done + step)
            {
                part.fill(0xFF);
            }
            result = outcome;
        }
        done += step;
    }
    result
}

impl PciDeviceCallbacks for Emulator {
    fn initialize(&self) -> Result<(), HResult> {
        self.record(LifecycleEvent::Initialize);
        Ok(())
    }

    fn teardown(&self) {
        self.record(LifecycleEvent::Teardown);
    }

    fn set_configuration(&self, values: &[String]) -> Result<(), HResult> {
        let mut state = self.lock();
        state.events.push(LifecycleEvent::SetConfiguration);
        state.configuration = values.to_vec();
        Ok(())
    }

    fn get_details(&self, probed_bars: &mut [u32]) -> Result<PciPnpId, HResult> {
        let mut state = self.lock();
        state.events.push(LifecycleEvent::GetDetails);
        if state.layout.is_none() {
            // The VM started before the device host received its layout from the driver.
            return Err(HResult::E_UNEXPECTED);
        }
        let probed = state.config.probed_bars();
        for (index, slot) in probed_bars.iter_mut().enumerate() {
            *slot = probed.get(index).copied().unwrap_or(0);
        }
        Ok(state.config.pnp_id())
    }

    fn start(&self) -> Result<(), HResult> {
        self.record(LifecycleEvent::Start);
        Ok(())
    }

    fn stop(&self) {
        self.record(LifecycleEvent::Stop);
    }

    fn read_config_space(&self, offset: u32) -> Result<u32, HResult> {
        Ok(self.lock().config.read(offset))
    }

    fn write_config_space(&self, offset: u32, value: u32) -> Result<(), HResult> {
        let changed = {
            let mut state = self.lock();
            if state.config.write(offset, value) {
                let now = state.config.bar_placement();
                if now != state.reported_placement {
                    state.reported_placement = now;
                    now
                } else {
                    None
                }
            } else {
                None
            }
        };
        if let Some(placement) = changed {
            // A refused placement is counted by the signal; the write itself succeeded.
            let _ = self
                .placement
                .report(PlacementSource::ConfigSpace, placement.into());
        }
        Ok(())
    }

    fn read_intercepted_memory(
        &self,
        bar: u32,
        offset: u64,
        value: &mut [u8],
    ) -> Result<(), HResult> {
        self.access(bar, offset, Access::Read(value))
    }

    fn write_intercepted_memory(&self, bar: u32, offset: u64, value: &[u8]) -> Result<(), HResult> {
        self.access(bar, offset, Access::Write(value))
    }
}
