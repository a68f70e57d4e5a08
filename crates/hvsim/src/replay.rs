//! `hvsim replay <DIR>`: every file of a directory, in file-name order, as one guest packet to
//! the driver's real packet handler (issue 9 item 5).
//!
//! The tool opens one session of the real control device on a simulated VM ([`GuestSession`]),
//! has the guest open the channel and negotiate a version with the guest library
//! ([`GuestClient`]: `HELLO`, `SELECT_VERSION`), then sends each file's bytes as one packet and
//! prints, per file, `<file-name> accepted` (any reply but `ERROR`, or a `WAIT_EVENT` the host
//! holds) or `<file-name> rejected:<CODE>` (the `ERROR` reply's code name), then
//! `replay: <N> packets, <A> accepted, <R> rejected, channel <open|closed>`.
//!
//! It never stops early and never panics on what the files hold:
//! - a file longer than the channel's maximum packet size is cut to that size (VMBus carries
//!   nothing longer) and sent as one packet, which the handler refuses like any packet whose
//!   length is not its message's;
//! - an entry that is not a regular file, or that cannot be read, is printed as
//!   `<file-name> skipped:<reason>` and not counted;
//! - after the host stopped answering (the guest's error allowance ran out) every later packet
//!   is sent too, and is refused (`CHANNEL_CLOSING`); the summary then says `channel closed`.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use vmbmmio_core::channel::DEFAULT_PACKET_SIZE;
use vmbmmio_proto::guest::{GuestClient, LARGEST_MESSAGE, ReplyBody, parse_reply};

use crate::guest_session::GuestSession;
use crate::kmcl::PacketOutcome;

/// Region sizes of the replay's session (a 1 MiB BAR).
pub const REPLAY_REGIONS: [u64; 2] = [512 << 10, 256 << 10];

/// What one file came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Answered with its reply, or held.
    Accepted,
    /// Answered with `ERROR` of this code name (or, for what never reached the handler, a
    /// reason in capitals).
    Rejected(String),
    /// Not a readable regular file.
    Skipped(String),
}

/// The replay's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Packets sent.
    pub packets: u64,
    /// Of those, accepted.
    pub accepted: u64,
    /// Of those, rejected.
    pub rejected: u64,
    /// Whether the host still answers the guest at the end.
    pub channel_open: bool,
}

/// Replays `dir` and writes the report to `out`. Fails only if the directory cannot be listed
/// or the simulated session cannot be set up.
pub fn run(dir: &Path, out: &mut impl Write) -> Result<Summary, String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|error| format!("{}: {error}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| (entry.file_name(), entry.path()))
        .collect();
    entries.sort();
    let session = GuestSession::open(&REPLAY_REGIONS)?;
    negotiate(&session)?;
    let mut summary = Summary::default();
    for (name, path) in entries {
        let verdict = match read_packet(&path) {
            Ok(bytes) => send(&session, &bytes),
            Err(reason) => Verdict::Skipped(reason),
        };
        let name = name.to_string_lossy();
        let line = match &verdict {
            Verdict::Accepted => {
                summary.accepted += 1;
                format!("{name} accepted")
            }
            Verdict::Rejected(code) => {
                summary.rejected += 1;
                format!("{name} rejected:{code}")
            }
            Verdict::Skipped(reason) => format!("{name} skipped:{reason}"),
        };
        if !matches!(verdict, Verdict::Skipped(_)) {
            summary.packets += 1;
        }
        writeln!(out, "{line}").map_err(|error| error.to_string())?;
    }
    summary.channel_open = session.events().inspect_shared(|shared| {
        let conversation = shared.engine().conversation();
        conversation.open && !conversation.closing && !conversation.stopped
    });
    writeln!(
        out,
        "replay: {} packets, {} accepted, {} rejected, channel {}",
        summary.packets,
        summary.accepted,
        summary.rejected,
        if summary.channel_open {
            "open"
        } else {
            "closed"
        }
    )
    .map_err(|error| error.to_string())?;
    let left = session.close();
    if !left.is_empty() {
        return Err(format!("the simulated host was left unbalanced: {left}"));
    }
    Ok(summary)
}

/// `HELLO` and `SELECT_VERSION`, through the guest library.
fn negotiate(session: &GuestSession) -> Result<(), String> {
    let mut client = GuestClient::new();
    let mut buf = [0u8; LARGEST_MESSAGE];
    for step in 0..2 {
        let sent = if step == 0 {
            client.hello(&mut buf)
        } else {
            client.select_version(&mut buf)
        }
        .map_err(|error| format!("negotiation: {error:?}"))?;
        let request = buf.get(..sent.len).ok_or("negotiation: request too long")?;
        match session.send(request) {
            Ok(PacketOutcome::Completed(reply)) => {
                client
                    .on_reply(&reply)
                    .map_err(|error| format!("negotiation: {error:?}"))?;
            }
            other => return Err(format!("negotiation: {other:?}")),
        }
    }
    match client.version() {
        Some(_) => Ok(()),
        None => Err(format!("negotiation refused: {:?}", client.last_error())),
    }
}

/// The first `DEFAULT_PACKET_SIZE` bytes of a regular file.
fn read_packet(path: &Path) -> Result<Vec<u8>, String> {
    let metadata = std::fs::metadata(path).map_err(|error| reason(&error))?;
    if !metadata.is_file() {
        return Err("not-a-file".into());
    }
    let file = File::open(path).map_err(|error| reason(&error))?;
    let mut bytes = Vec::new();
    file.take(u64::from(DEFAULT_PACKET_SIZE))
        .read_to_end(&mut bytes)
        .map_err(|error| reason(&error))?;
    Ok(bytes)
}

fn reason(error: &std::io::Error) -> String {
    format!("unreadable({:?})", error.kind())
}

/// One packet through the channel.
fn send(session: &GuestSession, bytes: &[u8]) -> Verdict {
    match session.send(bytes) {
        Ok(PacketOutcome::Completed(reply)) => match parse_reply(&reply) {
            Ok(reply) => match reply.body {
                ReplyBody::Error(info) => Verdict::Rejected(info.code.name().into()),
                _ => Verdict::Accepted,
            },
            Err(_) => Verdict::Rejected("UNPARSABLE_REPLY".into()),
        },
        Ok(PacketOutcome::Pending(_)) => Verdict::Accepted,
        Ok(PacketOutcome::Failed) => Verdict::Rejected("FAILED".into()),
        Err(error) => Verdict::Rejected(format!("NOT_DELIVERED({error:?})")),
    }
}
