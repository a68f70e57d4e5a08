//! The guest's program of the host-consumer exchange: it answers doorbells on one named region.
//!
//! The frame layout it shares with the host program (`examples/c/frames.c` in
//! crates/vmbmmio-host, the demo's host application), all little-endian: at offset 0 the magic
//! `FRM0`, at 4 the payload length, at 8 the sequence number (written last, with release
//! ordering), the payload at 64. When the host rings the region with value `v`, the program
//! reads the frame through the guest's BAR; if it is one, it writes the **answer** at
//! [`ANSWER_OFFSET`] in the same layout (payload bytes XOR [`ANSWER_XOR`], sequence `v`), and
//! rings back with `v + 1` either way. Doorbells on other regions are only recorded.

use std::sync::{Arc, Mutex, PoisonError};

use vmbmmio_proto::guest::{ClientEvent, EventKind};

use super::DemoError;
use super::world::DemoWorld;

/// The frame's magic, `FRM0`.
pub const FRAME_MAGIC: u32 = 0x304D_5246;
/// Offset of the magic.
pub const MAGIC_OFFSET: u64 = 0;
/// Offset of the payload length (u32).
pub const LENGTH_OFFSET: u64 = 4;
/// Offset of the sequence number (u64).
pub const SEQUENCE_OFFSET: u64 = 8;
/// Offset of the payload.
pub const PAYLOAD_OFFSET: u64 = 64;
/// Where the guest's answer frame starts.
pub const ANSWER_OFFSET: u64 = 4096;
/// The answer's payload is the frame's, each byte XOR this.
pub const ANSWER_XOR: u8 = 0x5A;

/// Narration lines shared by the simulator thread and a host program.
pub type SharedLog = Arc<Mutex<Vec<String>>>;

/// Appends a line to `log`.
pub fn note(log: &SharedLog, line: String) {
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(line);
}

/// The guest's program.
#[derive(Debug, Default)]
pub struct GuestProgram {
    /// The region it answers (by index), if any.
    pub answers: Option<u32>,
    /// Every doorbell it heard: `(region, value)`.
    pub heard: Vec<(u32, u64)>,
    /// Frames it answered.
    pub frames_answered: u64,
    /// Doorbells it rang back (acknowledged by the driver).
    pub rang_back: u64,
    /// Its first failure; it stops then.
    pub error: Option<String>,
    /// Where it narrates, if anywhere.
    pub log: Option<SharedLog>,
}

impl GuestProgram {
    /// A program that answers region `region` (by index).
    pub fn answering(region: Option<u32>) -> Self {
        Self {
            answers: region,
            ..Self::default()
        }
    }

    fn say(&self, line: String) {
        if let Some(log) = &self.log {
            note(log, line);
        }
    }

    /// Handles every event the driver has for the guest now. Does nothing once it failed or
    /// while the device host does not serve the VM (no session: nothing to hear).
    pub fn step(&mut self, world: &mut DemoWorld<'_>) {
        if self.error.is_some() || !world.device_host_running() {
            return;
        }
        if let Err(error) = self.drain(world) {
            self.error = Some(error.0);
        }
    }

    fn drain(&mut self, world: &mut DemoWorld<'_>) -> Result<(), DemoError> {
        // Bounded: the driver keeps at most 32 events per guest.
        for _ in 0..64 {
            let Some(event) = world.guest_next_event()? else {
                return Ok(());
            };
            if event.kind != EventKind::Doorbell {
                continue;
            }
            self.heard.push((event.region, event.value));
            if self.answers == Some(event.region) {
                self.answer(world, event.region, event.value)?;
            }
        }
        Ok(())
    }

    /// Reads the frame, writes the answer, rings back `value + 1`.
    fn answer(
        &mut self,
        world: &mut DemoWorld<'_>,
        region: u32,
        value: u64,
    ) -> Result<(), DemoError> {
        let mut header = [0u8; 16];
        world.guest_read_region(region, MAGIC_OFFSET, &mut header)?;
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let room = ANSWER_OFFSET - PAYLOAD_OFFSET;
        let fits = world
            .region_in_bar(region)
            .is_some_and(|(_, size)| ANSWER_OFFSET + PAYLOAD_OFFSET + u64::from(length) <= size);
        if magic == FRAME_MAGIC && u64::from(length) <= room && fits {
            let mut payload = vec![0u8; length as usize];
            world.guest_read_region(region, PAYLOAD_OFFSET, &mut payload)?;
            for byte in &mut payload {
                *byte ^= ANSWER_XOR;
            }
            world.guest_write_region(region, ANSWER_OFFSET + PAYLOAD_OFFSET, &payload)?;
            world.guest_write_region(
                region,
                ANSWER_OFFSET + LENGTH_OFFSET,
                &length.to_le_bytes(),
            )?;
            world.guest_write_region(
                region,
                ANSWER_OFFSET + MAGIC_OFFSET,
                &FRAME_MAGIC.to_le_bytes(),
            )?;
            world.guest_write_region(
                region,
                ANSWER_OFFSET + SEQUENCE_OFFSET,
                &value.to_le_bytes(),
            )?;
            self.frames_answered += 1;
            self.say(format!(
                "guest program: doorbell {value} on region {region}: read a {length}-byte frame \
                 through the BAR, wrote the answer (payload XOR {ANSWER_XOR:#04x}) at \
                 {ANSWER_OFFSET:#x}"
            ));
        } else {
            self.say(format!(
                "guest program: doorbell {value} on region {region}: no frame there"
            ));
        }
        match world.guest_ring(region, value + 1)? {
            ClientEvent::Acked(_) => {
                self.rang_back += 1;
                self.say(format!(
                    "guest program: rang region {region} back with {} (DOORBELL acknowledged)",
                    value + 1
                ));
                Ok(())
            }
            other => Err(DemoError(format!(
                "guest: DOORBELL answered with {other:?}"
            ))),
        }
    }
}
