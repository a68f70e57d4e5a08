//! VM targeting: a VMBus handle converted in the VM worker process selects that VM; loopback
//! (host-local testing only) needs no handle; a conversion in the wrong process is refused.

mod channel_support;

use channel_support::{Channel, config, running_vm, vm_target};
use hvsim::kmcl::{GuestKind, HvsimKmcl, Rule, Sim, SimHandleCloser, VmId};
use kmcl::KmclFunction as F;
use kmcl::raw::{STATUS_INVALID_HANDLE, VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER};
use vmbmmio_core::channel::{
    ChannelError, ChannelState, ChannelTarget, UserVmbusHandle, convert_vmbus_handle,
};
use vmbmmio_core::mmio_plan::MmioPlan;

fn plan() -> MmioPlan {
    MmioPlan::new(&[2 << 20]).unwrap()
}

#[test]
fn each_vm_sees_only_its_own_channel() {
    let sim = Sim::new();
    let vm_a = sim.add_vm(running_vm(GuestKind::Windows));
    let vm_b = sim.add_vm(running_vm(GuestKind::Windows));
    let channel_a =
        Channel::offer(sim.parent_device(), config(vm_target(&sim, &vm_a)), plan()).unwrap();
    assert_eq!(sim.guest(vm_a.id).offers().len(), 1);
    assert!(sim.guest(vm_b.id).offers().is_empty());
    assert!(sim.loopback_guest().offers().is_empty());
    let channel_b =
        Channel::offer(sim.parent_device(), config(vm_target(&sim, &vm_b)), plan()).unwrap();
    let offer_b = sim.guest(vm_b.id).only_offer().unwrap();
    sim.guest(vm_b.id).open(offer_b.channel).unwrap();
    assert_eq!(channel_a.state(), ChannelState::Offered);
    assert_eq!(channel_b.state(), ChannelState::Running);
    drop(channel_a);
    drop(channel_b);
    sim.assert_clean();
}

#[test]
fn conversion_in_the_wrong_process_is_refused() {
    let sim = Sim::new();
    let vm_a = sim.add_vm(running_vm(GuestKind::Windows));
    let vm_b = sim.add_vm(running_vm(GuestKind::Windows));
    let user_a = UserVmbusHandle::new(vm_a.user_handle).unwrap();
    // A queue callback may run in any process: the System process, or another VM's worker.
    for process in [sim.system_process(), vm_b.worker] {
        let error = sim
            .in_process(process, || {
                convert_vmbus_handle::<HvsimKmcl, SimHandleCloser>(user_a)
            })
            .unwrap_err();
        assert!(matches!(error, ChannelError::HandleConversion(e)
            if e.call == F::VmbConvertVmbusHandleToKernelHandle && e.status == STATUS_INVALID_HANDLE));
        let violations = sim.take_violations();
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].rule, Rule::ConvertOutsideOwningProcess);
    }
    assert_eq!(sim.counters().kernel_handles_converted, 0);
    // In the owning process it works.
    let handle = sim
        .in_process(vm_a.worker, || {
            convert_vmbus_handle::<HvsimKmcl, SimHandleCloser>(user_a)
        })
        .unwrap();
    drop(handle);
    sim.assert_clean();
}

#[test]
fn a_handle_that_names_nothing_is_an_error_not_a_violation() {
    let sim = Sim::new();
    let vm = sim.add_vm(running_vm(GuestKind::Windows));
    let bogus = UserVmbusHandle::new(0x7777).unwrap();
    let error = sim
        .in_process(vm.worker, || {
            convert_vmbus_handle::<HvsimKmcl, SimHandleCloser>(bogus)
        })
        .unwrap_err();
    assert_eq!(error.to_ntstatus(), STATUS_INVALID_HANDLE);
    sim.assert_clean();
}

#[test]
fn loopback_offers_to_the_host_itself_without_a_handle() {
    let sim = Sim::new();
    let vm = sim.add_vm(running_vm(GuestKind::Windows));
    let channel =
        Channel::offer(sim.parent_device(), config(ChannelTarget::Loopback), plan()).unwrap();
    assert!(sim.guest(vm.id).offers().is_empty());
    let loopback = sim.loopback_guest();
    assert_eq!(loopback.vm(), VmId::LOOPBACK);
    let offer = loopback.only_offer().unwrap();
    assert_ne!(
        offer.server_flags & VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER,
        0
    );
    loopback.open(offer.channel).unwrap();
    assert_eq!(channel.state(), ChannelState::Running);
    loopback.close(offer.channel).unwrap();
    drop(channel);
    assert_eq!(sim.counters().kernel_handles_converted, 0);
    sim.assert_clean();
}
