//! Host consumers of the simulated host's version-2 session (`docs/host-consumers.md`): each a
//! process of its own with one file handle on the driver's control device, attached to one
//! region by VM id and name, speaking the IOCTL bytes the glue passes. They live on the host's
//! thread (the simulated KMCL is thread-local) and go when the host closes. Include it next to
//! `fake_uio` (`#[path = "support/consumer.rs"] mod consumer;`).
//!
//! hvsim has no consumer helper of its own yet: this is the smallest one the agent's tests need
//! (attach, `RING_GUEST`, `TAKE_DOORBELLS`, cleanup).

#![allow(dead_code)]

use hvsim::guest_session::GuestSession;
use hvsim::memory::ProcessId;
use hvsim::sections::SYSTEM_PROCESS;
use kmcl::raw::NTSTATUS;
use vmbmmio_core::control::{Caller, FileKey, Opener, RequestorMode};
use vmbmmio_proto::guest::RegionName;
use vmbmmio_proto::ioctl::{
    AttachRegionRequest, AttachmentId, DoorbellTally, IoctlCode, RingGuestRequest, SectionAccess,
    TakeDoorbellsRequest, WireGuid, WireMessage, parse_attach_region_reply,
    parse_take_doorbells_reply,
};

/// The first file key consumers use (the device host's is 1).
const FIRST_FILE: usize = 100;

/// One attached consumer.
struct Consumer {
    process: ProcessId,
    caller: Caller,
    attachment: AttachmentId,
}

/// The consumers of one host.
#[derive(Default)]
pub struct Consumers {
    attached: Vec<Consumer>,
}

fn encode<M: WireMessage>(message: &M) -> Vec<u8> {
    let mut bytes = vec![0u8; M::SIZE];
    // A fixed-size message always fits its own size.
    let _ = message.encode(&mut bytes);
    bytes
}

/// One IOCTL of `caller` in `process`'s context.
fn ioctl(
    session: &mut GuestSession,
    process: ProcessId,
    caller: Caller,
    code: u32,
    input: &[u8],
    output_len: usize,
) -> Result<Vec<u8>, NTSTATUS> {
    session.kernel.set_current_process(process);
    let mut output = vec![0u8; output_len];
    let control = &mut session.control;
    let result = session.sim.in_process(process, || {
        control.dispatch(caller, code, input, &mut output)
    });
    session.kernel.set_current_process(SYSTEM_PROCESS);
    match result {
        Ok(written) => {
            output.truncate(written);
            Ok(output)
        }
        Err(error) => Err(error.to_ntstatus()),
    }
}

impl Consumers {
    /// A new consumer process attaches to region `name` of VM `vm_id` with `access`; its index.
    pub fn attach(
        &mut self,
        session: &mut GuestSession,
        vm_id: WireGuid,
        name: &str,
        access: SectionAccess,
    ) -> Result<usize, NTSTATUS> {
        let index = self.attached.len();
        let process = session.kernel.spawn_process();
        session.kernel.set_current_process(process);
        let kernel = &session.kernel;
        let opener = Opener::admit(FileKey(FIRST_FILE + index), RequestorMode::UserMode, || {
            kernel.reference_current_process()
        });
        session.kernel.set_current_process(SYSTEM_PROCESS);
        let opener = opener.map_err(|error| error.to_ntstatus())?;
        let caller = opener.caller();
        session
            .control
            .file_create(opener)
            .map_err(|error| error.to_ntstatus())?;
        let request = AttachRegionRequest::build(
            vm_id,
            &RegionName::required(name).expect("a valid name"),
            access,
        )
        .expect("an ATTACH_REGION request");
        let attached = ioctl(
            session,
            process,
            caller,
            IoctlCode::AttachRegion.code(),
            &encode(&request),
            IoctlCode::AttachRegion.reply_size(),
        );
        let attached = match attached {
            Ok(reply) => parse_attach_region_reply(&reply).expect("an ATTACH_REGION reply"),
            Err(status) => {
                session.control.file_cleanup(caller.file());
                session.kernel.exit_process(process);
                return Err(status);
            }
        };
        self.attached.push(Consumer {
            process,
            caller,
            attachment: attached.attachment(),
        });
        Ok(index)
    }

    /// Consumer `index` rings the guest (`RING_GUEST`) with `value`.
    pub fn ring(
        &mut self,
        session: &mut GuestSession,
        index: usize,
        value: u64,
    ) -> Result<(), NTSTATUS> {
        let consumer = self.attached.get(index).expect("an attached consumer");
        ioctl(
            session,
            consumer.process,
            consumer.caller,
            IoctlCode::RingGuest.code(),
            &encode(&RingGuestRequest::build(consumer.attachment, value)),
            IoctlCode::RingGuest.reply_size(),
        )
        .map(drop)
    }

    /// Consumer `index` takes the guest's doorbells (`TAKE_DOORBELLS`).
    pub fn take(
        &mut self,
        session: &mut GuestSession,
        index: usize,
    ) -> Result<DoorbellTally, NTSTATUS> {
        let consumer = self.attached.get(index).expect("an attached consumer");
        let reply = ioctl(
            session,
            consumer.process,
            consumer.caller,
            IoctlCode::TakeDoorbells.code(),
            &encode(&TakeDoorbellsRequest::build(consumer.attachment)),
            IoctlCode::TakeDoorbells.reply_size(),
        )?;
        Ok(parse_take_doorbells_reply(&reply).expect("a TAKE_DOORBELLS reply"))
    }

    /// Every consumer closes its handle and exits (before the host closes).
    pub fn close(self, session: &mut GuestSession) {
        for consumer in self.attached {
            session.control.file_cleanup(consumer.caller.file());
            session.kernel.exit_process(consumer.process);
        }
    }
}
