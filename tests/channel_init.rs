//! The driver creates its channel in the order the reference records for host VSPs, and a
//! failure at any step leaves nothing behind.

mod channel_support;

use channel_support::{Channel, config, offer_to_new_vm, running_vm, vm_target};
use hvsim::kmcl::{CallArgs, CallbackKind, GuestKind, LogEntry, Sim};
use kmcl::raw::{
    NTSTATUS, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER, STATUS_INVALID_PARAMETER_2,
    VMBUS_SERVER_CHANNEL_INIT_FLAG_ENUMERATE_DEVICE_INTERFACE,
    VMBUS_SERVER_CHANNEL_INIT_FLAG_FORCE_NEW_CHANNEL,
    VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER,
};
use kmcl::{KmclError, KmclFunction as F, SetupError};
use vmbmmio_core::channel::{ChannelError, ChannelTarget, ConfigError};
use vmbmmio_core::mmio_plan::MmioPlan;

/// kmcl.md §4 "Init order" (host dxgkrnl `CreateServerVmBusChannel`), with
/// `VmbChannelSetIncomingProcessingAtPassive` right after Allocate (dxgkrnl's VAIL path, §4
/// "Optional extras").
const VMBUS_ORDER: [F; 13] = [
    F::VmbChannelAllocate,
    F::VmbChannelSetIncomingProcessingAtPassive,
    F::VmbServerChannelInitSetVmbusHandle,
    F::VmbChannelInitSetMaximumPacketSize,
    F::VmbChannelSetPointer,
    F::VmbServerChannelInitSetTargetInterfaceId,
    F::VmbChannelInitSetStateChangeCallbacks,
    F::VmbChannelInitSetProcessPacketCallbacks,
    F::VmbServerChannelInitSetFlags,
    F::VmbChannelInitSetFriendlyName,
    F::VmbServerChannelInitSetMmioMegabytes,
    F::VmbChannelEnable,
    F::VmbChannelStart,
];

#[test]
fn init_order_matches_the_reference_and_arguments_are_the_plans() {
    let sim = Sim::new();
    let vm = sim.add_vm(running_vm(GuestKind::Windows));
    let target = vm_target(&sim, &vm);
    sim.clear_log();
    let plan = MmioPlan::new(&[3 << 20]).unwrap();
    let channel = Channel::offer(sim.parent_device(), config(target), plan.clone()).unwrap();
    assert_eq!(sim.call_names(), VMBUS_ORDER);

    let calls = sim.calls();
    let args = |function: F| {
        calls
            .iter()
            .find(|c| c.function == function)
            .unwrap()
            .args
            .clone()
    };
    assert_eq!(
        args(F::VmbChannelAllocate),
        CallArgs::Allocate { is_server: true }
    );
    assert_eq!(
        args(F::VmbChannelSetIncomingProcessingAtPassive),
        CallArgs::Bool(true)
    );
    assert_eq!(
        args(F::VmbServerChannelInitSetFlags),
        CallArgs::Flags(
            VMBUS_SERVER_CHANNEL_INIT_FLAG_ENUMERATE_DEVICE_INTERFACE
                | VMBUS_SERVER_CHANNEL_INIT_FLAG_FORCE_NEW_CHANNEL
        )
    );
    assert_eq!(
        args(F::VmbServerChannelInitSetMmioMegabytes),
        CallArgs::Mmio {
            megabytes: plan.mmio_megabytes(),
            optional: plan.mmio_megabytes_optional()
        }
    );
    assert_eq!(
        args(F::VmbChannelInitSetFriendlyName),
        CallArgs::Name("vmbmmio".into())
    );
    assert!(calls.iter().all(|c| c.status.is_none_or(|s| s >= 0)));
    drop(channel);
    sim.assert_clean();
}

#[test]
fn loopback_skips_the_vmbus_handle_and_sets_the_loopback_flag() {
    let sim = Sim::new();
    let plan = MmioPlan::new(&[1 << 20]).unwrap();
    let channel =
        Channel::offer(sim.parent_device(), config(ChannelTarget::Loopback), plan).unwrap();
    let expected: Vec<F> = VMBUS_ORDER
        .into_iter()
        .filter(|f| *f != F::VmbServerChannelInitSetVmbusHandle)
        .collect();
    assert_eq!(sim.call_names(), expected);
    let flags = sim
        .calls()
        .into_iter()
        .find(|c| c.function == F::VmbServerChannelInitSetFlags)
        .unwrap();
    assert_eq!(
        flags.args,
        CallArgs::Flags(
            VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER
                | VMBUS_SERVER_CHANNEL_INIT_FLAG_ENUMERATE_DEVICE_INTERFACE
                | VMBUS_SERVER_CHANNEL_INIT_FLAG_FORCE_NEW_CHANNEL
        )
    );
    assert!(channel.is_loopback());
    drop(channel);
    sim.assert_clean();
}

#[test]
fn a_failure_at_every_init_step_leaves_no_channel_handle_or_context() {
    let failing: Vec<F> = VMBUS_ORDER
        .into_iter()
        .filter(|f| f.returns_status())
        .collect();
    assert_eq!(
        failing.len(),
        10,
        "every NTSTATUS-returning step is covered"
    );
    for (function, status) in failing.into_iter().flat_map(|f| {
        [
            (f, STATUS_INVALID_PARAMETER_2),
            (f, STATUS_INSUFFICIENT_RESOURCES),
        ]
    }) {
        let sim = Sim::new();
        // The conversion made one kernel handle; the channel is the first Allocate.
        sim.fail_nth(function, 1, status);
        let error = offer_to_new_vm(&sim, running_vm(GuestKind::Windows), &[1 << 20])
            .err()
            .unwrap();
        assert_eq!(
            error,
            ChannelError::Setup(SetupError::Kmcl(KmclError {
                call: function,
                status
            })),
            "{function:?}"
        );
        assert_eq!(error.to_ntstatus(), status);
        let counters = sim.counters();
        assert_eq!(
            counters.channels_allocated,
            u64::from(function != F::VmbChannelAllocate)
        );
        assert_eq!(counters.kernel_handles_converted, 1);
        assert_eq!(counters.contexts_allocated, 1);
        sim.assert_clean(); // channels, handles and contexts all released, no rule broken
        // Nothing was offered, or the offer was never made (Enable failed).
        let offers: usize = sim.channel_ids().len();
        assert!(offers <= 1);
        assert!(
            sim.guest(hvsim::kmcl::VmId(1)).offers().is_empty(),
            "{function:?}"
        );
        // Cleanup came before the handle was closed (the model flags the other order).
        let names = sim.call_names();
        assert_eq!(
            names.last(),
            Some(&if function == F::VmbChannelAllocate {
                function
            } else {
                F::VmbChannelCleanup
            })
        );
    }
}

#[test]
fn a_failed_conversion_creates_nothing() {
    let sim = Sim::new();
    sim.fail_nth(
        F::VmbConvertVmbusHandleToKernelHandle,
        1,
        STATUS_INSUFFICIENT_RESOURCES,
    );
    let vm = sim.add_vm(running_vm(GuestKind::Windows));
    let user = vmbmmio_core::channel::UserVmbusHandle::new(vm.user_handle).unwrap();
    let error = sim
        .in_process(vm.worker, || {
            vmbmmio_core::channel::convert_vmbus_handle::<
                hvsim::kmcl::HvsimKmcl,
                hvsim::kmcl::SimHandleCloser,
            >(user)
        })
        .unwrap_err();
    assert_eq!(error.to_ntstatus(), STATUS_INSUFFICIENT_RESOURCES);
    assert_eq!(sim.counters().kernel_handles_converted, 0);
    sim.assert_clean();
}

#[test]
fn invalid_configurations_make_no_kmcl_call_and_close_the_handle() {
    type Mutate =
        fn(&mut vmbmmio_core::channel::ChannelConfig<'static, hvsim::kmcl::SimHandleCloser>);
    let cases: [(Mutate, ConfigError); 5] = [
        (
            |c| c.interface_type = kmcl::raw::GUID::default(),
            ConfigError::NilInterfaceType,
        ),
        (|c| c.friendly_name = "", ConfigError::EmptyName),
        (
            |c| {
                c.friendly_name =
                    "a name far longer than the sixty-four UTF-16 units the driver allows"
            },
            ConfigError::NameTooLong,
        ),
        (
            |c| c.max_packet_size = 0,
            ConfigError::PacketSizeOutOfRange { size: 0 },
        ),
        (
            |c| c.max_packet_size = 0x2_0001,
            ConfigError::PacketSizeOutOfRange { size: 0x2_0001 },
        ),
    ];
    for (mutate, expected) in cases {
        let sim = Sim::new();
        let vm = sim.add_vm(running_vm(GuestKind::Windows));
        let mut cfg = config(vm_target(&sim, &vm));
        mutate(&mut cfg);
        sim.clear_log();
        let error = Channel::offer(sim.parent_device(), cfg, MmioPlan::new(&[4096]).unwrap())
            .err()
            .unwrap();
        assert_eq!(error, ChannelError::Config(expected));
        assert_eq!(error.to_ntstatus(), STATUS_INVALID_PARAMETER);
        assert!(sim.call_names().is_empty());
        sim.assert_clean();
    }
}

#[test]
fn teardown_disables_then_cleans_up_then_closes_the_handle() {
    let sim = Sim::new();
    let (_vm, channel) = offer_to_new_vm(&sim, running_vm(GuestKind::Windows), &[4096]).unwrap();
    sim.clear_log();
    channel.close();
    assert_eq!(
        sim.call_names(),
        [F::VmbChannelDisable, F::VmbChannelCleanup]
    );
    let counters = sim.counters();
    assert_eq!(counters.kernel_handles_closed, 1);
    sim.assert_clean(); // includes: the handle was closed only after Cleanup
    // Never opened: Disable ran no state callbacks.
    assert!(!sim.log().iter().any(|e| matches!(
        e,
        LogEntry::Callback {
            kind: CallbackKind::Closed,
            ..
        }
    )));
}

#[test]
fn the_model_rejects_mmio_megabytes_zero_even_with_an_optional_amount() {
    // The driver never asks for 0 (MmioPlan guarantees > 0); this proves the model would catch it.
    let sim = Sim::new();
    let params = kmcl::server::ServerChannelParams {
        parent: sim.parent_device(),
        vmbus_handle: None,
        incoming_at_passive: true,
        maximum_packet_size: 4096,
        interface_type: channel_support::INTERFACE_TYPE,
        interface_instance: channel_support::INTERFACE_INSTANCE,
        server_flags: VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER,
        friendly_name: "zero",
        mmio_megabytes: 0,
        mmio_megabytes_optional: 4,
    };
    let error = kmcl::server::ServerChannel::<
        hvsim::kmcl::HvsimKmcl,
        vmbmmio_core::channel::ChannelShared,
    >::create(params, Default::default())
    .err()
    .unwrap();
    let expected: NTSTATUS = STATUS_INVALID_PARAMETER;
    assert_eq!(
        error,
        SetupError::Kmcl(KmclError {
            call: F::VmbServerChannelInitSetMmioMegabytes,
            status: expected
        })
    );
    let violations = sim.take_violations();
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].rule, hvsim::kmcl::Rule::MmioMegabytesZero);
    sim.assert_clean();
}
