//! The demo's host application: a program on the host that uses the host library
//! (`vmbmmio-host`) exactly as on Windows, over the simulated platform's transport
//! (`crate::host_sim::SimDriver`, its own simulated process). It lists the attachable VMs,
//! attaches to the region `frames` **by VM id and name**, is refused write access to the
//! consumers-read-only region `log`, writes a frame and rings the guest; the guest's program
//! (`super::guest_program`) reads the frame through its BAR, writes its answer and rings back;
//! the application wakes on that doorbell and checks the answer byte for byte. Then it detaches
//! and closes everything.
//!
//! It runs on a thread of its own while the simulator serves the machine on the demo's thread
//! (`crate::host_sim::SimWorld::serve`), like a separate process.

use std::sync::atomic::Ordering;
use std::time::Duration;

use vmbmmio_host::{Access, Error, Host};

use super::guest_program::{
    ANSWER_OFFSET, ANSWER_XOR, FRAME_MAGIC, LENGTH_OFFSET, MAGIC_OFFSET, PAYLOAD_OFFSET,
    SEQUENCE_OFFSET, SharedLog, note,
};
use crate::host_sim::{SimDriver, SimLink};

/// The frame's payload length.
pub const PAYLOAD_LEN: usize = 1024;

/// The smallest `frames` region the exchange fits in (frame and answer).
pub const MIN_REGION: u64 = super::guest_program::ANSWER_OFFSET * 2;

/// What the host application did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exchange {
    /// Payload bytes the guest answered that the application checked.
    pub bytes_verified: u64,
    /// Answer bytes that differed from what the guest's program must write.
    pub mismatches: u64,
    /// Doorbells the application rang (RING_GUEST).
    pub doorbells_to_guest: u64,
    /// Guest doorbells that woke it (TAKE_DOORBELLS count).
    pub doorbells_from_guest: u64,
}

/// The frame's payload: a pattern no page check writes.
fn payload() -> Vec<u8> {
    (0..PAYLOAD_LEN)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(0x41))
        .collect()
}

fn failed(what: &str, error: Error) -> String {
    format!("host application: {what}: {error} ({})", error.kind())
}

/// Runs the application over the simulator behind `link`, narrating to `log`.
pub fn run(link: SimLink, log: &SharedLog) -> Result<Exchange, String> {
    let driver = SimDriver::open(link)
        .map_err(|failure| format!("host application: opening \\\\.\\vmbmmio failed: {failure}"))?;
    let host = Host::with_driver(driver);
    let sessions = host.list().map_err(|e| failed("LIST_SESSIONS", e))?;
    for session in &sessions {
        let regions: Vec<String> = session
            .regions
            .iter()
            .map(|r| {
                format!(
                    "{} ({} KiB, consumers {})",
                    r.name,
                    r.size >> 10,
                    r.max_access().as_str()
                )
            })
            .collect();
        note(
            log,
            format!(
                "host application: listed VM {} (session {}): {}",
                session.vm_id,
                session.session_id,
                regions.join(", ")
            ),
        );
    }
    let (vm, _) = host
        .find("frames")
        .map_err(|e| failed("LIST_SESSIONS", e))?
        .ok_or("host application: no VM has a region named `frames`")?;
    let frames = host
        .attach(vm, "frames", Access::ReadWrite)
        .map_err(|e| failed("attaching `frames`", e))?;
    note(
        log,
        format!(
            "host application: attached `frames` of VM {vm} by name: attachment {}, region {}, \
             {} bytes, section handle {:#x} in its own process, read-write",
            frames.id(),
            frames.region_index(),
            frames.size(),
            frames.section_handle()
        ),
    );
    // A region consumers may only read (e.g. `log`, host-ro): write access is refused.
    let read_only = sessions
        .iter()
        .filter(|session| session.vm_id == vm)
        .flat_map(|session| &session.regions)
        .find(|region| region.max_access() == Access::Read);
    if let Some(region) = read_only {
        match host.attach(vm, &region.name, Access::ReadWrite) {
            Err(Error::AccessDenied { .. }) => note(
                log,
                format!(
                    "host application: asked `{}` read-write: refused (access_denied): \
                     consumers may only read it",
                    region.name
                ),
            ),
            Ok(_) => {
                return Err(format!(
                    "host application: `{}` was attached read-write",
                    region.name
                ));
            }
            Err(error) => return Err(failed("attaching a read-only region", error)),
        }
    }

    let view = frames.map().map_err(|e| failed("mapping `frames`", e))?;
    frames
        .set_event()
        .map_err(|e| failed("registering the doorbell event", e))?;
    let sent = payload();
    let sequence = 1u64;
    let written = view
        .write(PAYLOAD_OFFSET, &sent)
        .and_then(|()| view.write_u32(MAGIC_OFFSET, FRAME_MAGIC))
        .and_then(|()| view.write_u32(LENGTH_OFFSET, PAYLOAD_LEN as u32))
        .and_then(|()| view.atomic_u64(SEQUENCE_OFFSET))
        .map(|cell| cell.store(sequence, Ordering::Release));
    written.map_err(|e| failed("writing the frame", e))?;
    // Narrated before the ring: the guest's program answers while this thread waits.
    note(
        log,
        format!(
            "host application: wrote a {PAYLOAD_LEN}-byte frame into its view, published \
             sequence {sequence} (release store), rings the guest (RING_GUEST {sequence})"
        ),
    );
    frames.ring(sequence).map_err(|e| failed("RING_GUEST", e))?;
    let mut exchange = Exchange {
        doorbells_to_guest: 1,
        ..Exchange::default()
    };

    let bells = frames
        .wait_doorbell(Some(Duration::from_secs(10)))
        .map_err(|e| failed("waiting for the guest's doorbell", e))?
        .ok_or("host application: no doorbell from the guest within 10 s")?;
    exchange.doorbells_from_guest = bells.count;
    let answered = view
        .atomic_u64(ANSWER_OFFSET + SEQUENCE_OFFSET)
        .map(|cell| cell.load(Ordering::Acquire))
        .map_err(|e| failed("reading the answer", e))?;
    let magic = view
        .read_u32(ANSWER_OFFSET + MAGIC_OFFSET)
        .map_err(|e| failed("reading the answer", e))?;
    let mut answer = vec![0u8; PAYLOAD_LEN];
    view.read(ANSWER_OFFSET + PAYLOAD_OFFSET, &mut answer)
        .map_err(|e| failed("reading the answer", e))?;
    exchange.bytes_verified = PAYLOAD_LEN as u64;
    exchange.mismatches = sent
        .iter()
        .zip(&answer)
        .filter(|(s, a)| *s ^ ANSWER_XOR != **a)
        .count() as u64
        + u64::from(magic != FRAME_MAGIC || answered != sequence);
    note(
        log,
        format!(
            "host application: woken by the guest's doorbell (count {}, value {}); read the \
             guest's answer to sequence {answered} from its view: {} of {PAYLOAD_LEN} bytes \
             differ from the frame XOR {ANSWER_XOR:#04x}",
            bells.count, bells.last_value, exchange.mismatches
        ),
    );

    frames.detach().map_err(|e| failed("DETACH_REGION", e))?;
    drop(view);
    drop(host);
    note(
        log,
        "host application: detached, unmapped, closed its handle and exited".into(),
    );
    Ok(exchange)
}
