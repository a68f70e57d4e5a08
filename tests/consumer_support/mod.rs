//! Shared setup of the host-consumer tests (docs/host-consumers.md): version-2 sessions with
//! named regions, consumers attaching through IOCTL bytes, exactly as the glue passes them.
#![allow(dead_code)] // each test crate uses a different subset

use std::num::NonZeroU64;

use hvsim::memory::ProcessId;
use kmcl::raw::NTSTATUS;
use vmbmmio_core::control::Caller;
use vmbmmio_proto::guest::RegionName;
use vmbmmio_proto::ioctl::{
    AttachRegionRequest, AttachmentId, DetachRegionRequest, DoorbellTally, IoctlCode,
    ListSessionsRequest, NamedRegionRequest, OpenSessionV2Request, RegionAttached,
    RingGuestRequest, SectionAccess, SessionListing, SessionOpened, SetDoorbellEventRequest,
    TakeDoorbellsRequest, Target, WireGuid, parse_attach_region_reply, parse_list_sessions_reply,
    parse_open_session_reply, parse_take_doorbells_reply,
};

use crate::control_support::{Bench, INTERFACE_INSTANCE, INTERFACE_TYPE, encode};

/// A region of a version-2 session: (size, guest-writable, consumer-writable, name).
pub type Named = (u64, bool, bool, &'static str);

/// The tests' usual regions: a ring both sides write, a frame only the guest writes.
pub const REGIONS: [Named; 2] = [(2 * 4096, true, true, "ring"), (4096, true, false, "frame")];

/// VM ids of the tests' VMs.
pub const VM_A: WireGuid = WireGuid::from_u128(0xa0a0_0000_0000_4000_8000_0000_0000_000a);
pub const VM_B: WireGuid = WireGuid::from_u128(0xb0b0_0000_0000_4000_8000_0000_0000_000b);

/// OPEN_SESSION version 2 bytes.
pub fn open_v2_bytes(target: Target, vm_id: WireGuid, regions: &[Named]) -> Vec<u8> {
    let regions: Vec<NamedRegionRequest> = regions
        .iter()
        .map(
            |&(size, guest_writable, consumer_writable, name)| NamedRegionRequest {
                size,
                guest_writable,
                consumer_writable,
                name: RegionName::required(name).unwrap(),
            },
        )
        .collect();
    encode(
        &OpenSessionV2Request::build(target, INTERFACE_TYPE, INTERFACE_INSTANCE, vm_id, &regions)
            .unwrap(),
    )
}

/// A running VM, its device host with a version-2 session of `regions` named `vm_id`.
pub struct Hosted {
    pub process: ProcessId,
    pub caller: Caller,
    pub vm: hvsim::kmcl::SimVm,
    pub opened: SessionOpened,
}

impl Bench {
    /// A device host (file `file`) with a running VM and a version-2 session on it.
    pub fn host_v2(&mut self, file: usize, vm_id: WireGuid, regions: &[Named]) -> Hosted {
        let (process, vm) = self.device_host_with_vm();
        let caller = self.open_file(process, file);
        let opened = self
            .open_v2(
                caller,
                crate::control_support::vm_target(&vm),
                vm_id,
                regions,
            )
            .unwrap();
        Hosted {
            process,
            caller,
            vm,
            opened,
        }
    }

    pub fn open_v2(
        &mut self,
        caller: Caller,
        target: Target,
        vm_id: WireGuid,
        regions: &[Named],
    ) -> Result<SessionOpened, NTSTATUS> {
        let reply = self.ioctl(
            caller,
            IoctlCode::OpenSession.code(),
            &open_v2_bytes(target, vm_id, regions),
            IoctlCode::OpenSession.reply_size(),
        )?;
        Ok(parse_open_session_reply(&reply).unwrap())
    }

    /// A consumer process with one file handle open.
    pub fn consumer(&mut self, file: usize) -> (ProcessId, Caller) {
        let process = self.kernel.spawn_process();
        let caller = self.open_file(process, file);
        (process, caller)
    }

    pub fn list(&mut self, caller: Caller, cursor: u32) -> Result<SessionListing, NTSTATUS> {
        let reply = self.ioctl(
            caller,
            IoctlCode::ListSessions.code(),
            &encode(&ListSessionsRequest::build(cursor)),
            IoctlCode::ListSessions.reply_size(),
        )?;
        Ok(parse_list_sessions_reply(&reply).unwrap())
    }

    pub fn attach(
        &mut self,
        caller: Caller,
        vm_id: WireGuid,
        name: &str,
        access: SectionAccess,
    ) -> Result<RegionAttached, NTSTATUS> {
        let request =
            AttachRegionRequest::build(vm_id, &RegionName::required(name).unwrap(), access)
                .unwrap();
        let reply = self.ioctl(
            caller,
            IoctlCode::AttachRegion.code(),
            &encode(&request),
            IoctlCode::AttachRegion.reply_size(),
        )?;
        Ok(parse_attach_region_reply(&reply).unwrap())
    }

    pub fn detach(&mut self, caller: Caller, id: AttachmentId) -> Result<(), NTSTATUS> {
        self.ioctl(
            caller,
            IoctlCode::DetachRegion.code(),
            &encode(&DetachRegionRequest::build(id)),
            IoctlCode::DetachRegion.reply_size(),
        )
        .map(drop)
    }

    pub fn set_event(
        &mut self,
        caller: Caller,
        id: AttachmentId,
        handle: u64,
    ) -> Result<(), NTSTATUS> {
        self.ioctl(
            caller,
            IoctlCode::SetDoorbellEvent.code(),
            &encode(&SetDoorbellEventRequest::build(id, NonZeroU64::new(handle))),
            IoctlCode::SetDoorbellEvent.reply_size(),
        )
        .map(drop)
    }

    pub fn take(&mut self, caller: Caller, id: AttachmentId) -> Result<DoorbellTally, NTSTATUS> {
        let reply = self.ioctl(
            caller,
            IoctlCode::TakeDoorbells.code(),
            &encode(&TakeDoorbellsRequest::build(id)),
            IoctlCode::TakeDoorbells.reply_size(),
        )?;
        Ok(parse_take_doorbells_reply(&reply).unwrap())
    }

    pub fn ring(&mut self, caller: Caller, id: AttachmentId, value: u64) -> Result<(), NTSTATUS> {
        self.ioctl(
            caller,
            IoctlCode::RingGuest.code(),
            &encode(&RingGuestRequest::build(id, value)),
            IoctlCode::RingGuest.reply_size(),
        )
        .map(drop)
    }

    /// Everything any attachment made is released: attachments, event references, event
    /// objects (once their processes closed them), and the usual session checks.
    pub fn assert_consumers_released(&self) {
        let attachments = self.control.attachment_counters();
        assert_eq!(attachments.created, attachments.released, "{attachments:?}");
        let objects = self.kernel.counters();
        assert_eq!(
            objects.event_references_taken, objects.event_references_released,
            "{objects:?}"
        );
        // No lock rule was broken on this test's thread (event references outside the spin
        // lock, no allocation under it, lock order).
        let broken = hvsim::lock_rules::take_broken();
        assert!(broken.is_empty(), "{broken:?}");
    }
}
