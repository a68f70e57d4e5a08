//! Shared setup of the channel integration tests: the driver's real `VmChannel` over the
//! hvsim KMCL model, through the `extern "system"` table.
#![allow(dead_code)] // each test crate uses a different subset

use hvsim::kmcl::{GuestKind, GuestVm, HvsimKmcl, Power, Sim, SimHandleCloser, SimVm};
use kmcl::raw::GUID;
use vmbmmio_core::channel::{
    ChannelConfig, ChannelError, ChannelTarget, DEFAULT_PACKET_SIZE, UserVmbusHandle, VmChannel,
    convert_vmbus_handle,
};
use vmbmmio_core::mmio_plan::MmioPlan;

/// The channel type every test uses.
pub type Channel = VmChannel<HvsimKmcl, SimHandleCloser>;
/// Its target type.
pub type Target = ChannelTarget<SimHandleCloser>;

/// Interface type GUID of the tests' channels.
pub const INTERFACE_TYPE: GUID = GUID::from_u128(0x9a1e_4f52_7c3b_4d0e_8f61_2b7a_c0de_0001);
/// Interface instance GUID of the tests' channels.
pub const INTERFACE_INSTANCE: GUID = GUID::from_u128(0x9a1e_4f52_7c3b_4d0e_8f61_2b7a_c0de_1001);
/// Friendly name of the tests' channels.
pub const NAME: &str = "vmbmmio";

/// A channel configuration for `target`.
pub fn config(target: Target) -> ChannelConfig<'static, SimHandleCloser> {
    ChannelConfig {
        interface_type: INTERFACE_TYPE,
        interface_instance: INTERFACE_INSTANCE,
        friendly_name: NAME,
        max_packet_size: DEFAULT_PACKET_SIZE,
        target,
    }
}

/// Converts `vm`'s VMBus handle in its worker process, as `EvtIoInCallerContext` would.
pub fn vm_target(sim: &Sim, vm: &SimVm) -> Target {
    let user = UserVmbusHandle::new(vm.user_handle).unwrap();
    let handle = sim
        .in_process(vm.worker, || {
            convert_vmbus_handle::<HvsimKmcl, SimHandleCloser>(user)
        })
        .unwrap();
    ChannelTarget::VmbusHandle(handle)
}

/// A running VM whose guest is `kind`, with the model's default MMIO pool.
pub fn running_vm(kind: GuestKind) -> GuestVm {
    let vm = GuestVm::with_default_pool(kind);
    vm.set_power(Power::Running);
    vm
}

/// Offers a channel planned for `regions` to a new KMCL VM linked to `guest`.
pub fn offer_to_new_vm(
    sim: &Sim,
    guest: GuestVm,
    regions: &[u64],
) -> Result<(SimVm, Channel), ChannelError> {
    let vm = sim.add_vm(guest);
    let plan = MmioPlan::new(regions).unwrap();
    let target = vm_target(sim, &vm);
    Channel::offer(sim.parent_device(), config(target), plan).map(|channel| (vm, channel))
}

/// A running channel: offered to a new running Windows-like VM, opened by its guest.
pub fn running_channel(sim: &Sim) -> (SimVm, Channel, hvsim::kmcl::ChannelId) {
    let (vm, channel) = offer_to_new_vm(sim, running_vm(GuestKind::Windows), &[1 << 20]).unwrap();
    let guest = sim.guest(vm.id);
    let offer = guest.only_offer().unwrap();
    guest.open(offer.channel).unwrap();
    (vm, channel, offer.channel)
}
