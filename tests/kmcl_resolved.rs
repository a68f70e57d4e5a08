//! The table DriverEntry builds from an export directory drives the driver's real channel code.
//!
//! A synthetic `vmbkmclr.sys` export directory names the KMCL entries; the resolver locates them
//! and `kmcl::resolve::build_table` turns each export into the simulator's function for that
//! name (on Windows: base + RVA, the only step that differs). The table goes into a write-once
//! cell exactly as `kmcl::Vmbkmclr::install` does, and a provider over that cell runs a whole
//! channel life against the KMCL model: offer, open, packets, close, nothing leaked. Without the
//! optional entries the driver still works and the table says which it lacks; before any table
//! is installed the first KMCL call fails cleanly.

#[path = "../crates/kmcl/tests/pe_support/mod.rs"]
mod pe_support;

use std::collections::HashMap;

use hvsim::kmcl::{GuestKind, GuestVm, HvsimKmcl, Power, Sim, SimHandleCloser};
use kmcl::raw::{GUID, STATUS_PROCEDURE_NOT_FOUND};
use kmcl::resolve::{
    ENTRIES, EntryPolicy, ExportDirectory, MappedImage, ResolveError, ResolvedKmcl, build_table,
    locate,
};
use kmcl::{ContextEvent, KmclApi, KmclFunction, KmclProvider, SetupError, TableCell, UNRESOLVED};
use pe_support::{Built, Spec};
use vmbmmio_core::channel::{
    ChannelConfig, ChannelError, ChannelState, ChannelTarget, DEFAULT_PACKET_SIZE, UserVmbusHandle,
    VmChannel, convert_vmbus_handle,
};
use vmbmmio_core::mmio_plan::MmioPlan;

/// A synthetic host library exporting `names`, resolved into the simulator's functions.
fn resolved_from_exports(names: &[&str]) -> ResolvedKmcl {
    let mut spec = Spec::named(names);
    spec.names.sort();
    let built = Built::new(&spec);
    let image = MappedImage::new(&built.mapped);
    let located = locate(&ExportDirectory::parse(&image).unwrap()).unwrap();
    // Each export's RVA → the simulator's function of the same name.
    let model = HvsimKmcl::api();
    let by_rva: HashMap<u32, usize> = KmclFunction::ALL
        .into_iter()
        .filter_map(|f| Some((located.rva(f)?, model.address_of(f)?)))
        .collect();
    // SAFETY: every address is the simulator's `extern "system"` function for the entry whose
    // export the RVA is, with the prototype of that `KmclApi` field (the model's own table).
    unsafe {
        build_table(&located, |rva| {
            by_rva
                .get(&rva)
                .copied()
                .ok_or(ResolveError::AddressOverflow)
        })
    }
    .unwrap()
}

fn every_name() -> Vec<&'static str> {
    ENTRIES.iter().map(|e| e.name).collect()
}

fn required_names() -> Vec<&'static str> {
    ENTRIES
        .iter()
        .filter(|e| e.policy == EntryPolicy::Required)
        .map(|e| e.name)
        .collect()
}

/// Providers over their own write-once cells, as `kmcl::Vmbkmclr` is over its static.
macro_rules! cell_provider {
    ($name:ident, $cell:ident) => {
        static $cell: TableCell = TableCell::new();
        struct $name;
        impl KmclProvider for $name {
            fn api() -> &'static KmclApi {
                $cell.get().unwrap_or(&UNRESOLVED)
            }
            fn context_event(event: ContextEvent) {
                HvsimKmcl::context_event(event);
            }
        }
    };
}

cell_provider!(Full, FULL);
cell_provider!(RequiredOnly, REQUIRED_ONLY);
cell_provider!(NeverInstalled, NEVER_INSTALLED);

const INTERFACE_TYPE: GUID = GUID::from_u128(0x5e7a_0c11_2d4b_4f6e_9a80_1b2c_3d4e_0001);
const INTERFACE_INSTANCE: GUID = GUID::from_u128(0x5e7a_0c11_2d4b_4f6e_9a80_1b2c_3d4e_1001);

/// Offers a channel through provider `P` to a new running Windows-like VM.
fn offer<P: KmclProvider>(
    sim: &Sim,
) -> (
    hvsim::kmcl::SimVm,
    Result<VmChannel<P, SimHandleCloser>, ChannelError>,
) {
    let guest = GuestVm::with_default_pool(GuestKind::Windows);
    guest.set_power(Power::Running);
    let vm = sim.add_vm(guest);
    let user = UserVmbusHandle::new(vm.user_handle).unwrap();
    let converted = sim.in_process(vm.worker, || {
        convert_vmbus_handle::<P, SimHandleCloser>(user)
    });
    let channel = converted.and_then(|handle| {
        let config = ChannelConfig {
            interface_type: INTERFACE_TYPE,
            interface_instance: INTERFACE_INSTANCE,
            friendly_name: "vmbmmio",
            max_packet_size: DEFAULT_PACKET_SIZE,
            target: ChannelTarget::VmbusHandle(handle),
        };
        VmChannel::offer(
            sim.parent_device(),
            config,
            MmioPlan::new(&[1 << 20]).unwrap(),
        )
    });
    (vm, channel)
}

/// A whole channel life: open, a packet each way through the driver's handler, close.
fn run_channel_life<P: KmclProvider>(sim: &Sim) {
    let (vm, channel) = offer::<P>(sim);
    let channel = channel.expect("offered through the resolved table");
    let guest = sim.guest(vm.id);
    let id = guest.only_offer().unwrap().channel;
    guest.open(id).unwrap();
    assert_eq!(channel.state(), ChannelState::Running);
    guest.send(id, b"hello").unwrap();
    assert_eq!(channel.stats().opens, 1);
    drop(channel);
    sim.assert_clean();
}

#[test]
fn the_table_built_from_an_export_directory_runs_a_whole_channel() {
    let resolved = resolved_from_exports(&every_name());
    assert!(resolved.missing_optional.is_empty());
    FULL.set(resolved.api).unwrap();
    for function in KmclFunction::ALL {
        assert_eq!(
            Full::api().address_of(function),
            HvsimKmcl::api().address_of(function),
            "{function:?} resolved to the model's function of that name"
        );
    }
    run_channel_life::<Full>(&Sim::new());
}

#[test]
fn without_the_optional_entries_the_driver_works_and_the_table_says_what_it_lacks() {
    let resolved = resolved_from_exports(&required_names());
    assert_eq!(resolved.missing_optional.len(), 9);
    assert!(
        resolved
            .missing_optional
            .contains(KmclFunction::VmbChannelGetMmioSpace)
    );
    REQUIRED_ONLY.set(resolved.api).unwrap();
    assert_eq!(
        RequiredOnly::api().missing_optional(),
        resolved.missing_optional
    );
    run_channel_life::<RequiredOnly>(&Sim::new());
}

#[test]
fn before_a_table_is_installed_the_first_call_fails_cleanly() {
    let sim = Sim::new();
    // The handle conversion is the first KMCL call of an offer to a VM.
    let (_vm, channel) = offer::<NeverInstalled>(&sim);
    match channel {
        Err(ChannelError::HandleConversion(error)) => {
            assert_eq!(
                error.call,
                KmclFunction::VmbConvertVmbusHandleToKernelHandle
            );
            assert_eq!(error.to_ntstatus(), STATUS_PROCEDURE_NOT_FOUND);
        }
        Err(other) => panic!("unexpected {other:?}"),
        Ok(_) => panic!("no table, no channel"),
    }
    // A loopback offer starts with VmbChannelAllocate.
    let config = ChannelConfig {
        interface_type: INTERFACE_TYPE,
        interface_instance: INTERFACE_INSTANCE,
        friendly_name: "vmbmmio",
        max_packet_size: DEFAULT_PACKET_SIZE,
        target: ChannelTarget::<SimHandleCloser>::Loopback,
    };
    let plan = MmioPlan::new(&[1 << 20]).unwrap();
    match VmChannel::<NeverInstalled, SimHandleCloser>::offer(sim.parent_device(), config, plan) {
        Err(ChannelError::Setup(SetupError::Kmcl(error))) => {
            assert_eq!(error.call, KmclFunction::VmbChannelAllocate);
            assert_eq!(error.to_ntstatus(), STATUS_PROCEDURE_NOT_FOUND);
        }
        Err(other) => panic!("unexpected {other:?}"),
        Ok(_) => panic!("no table, no channel"),
    }
    sim.assert_clean();
}
