//! A host that speaks no protocol version this agent does: the session refuses it with an
//! error that says so (kind `unsupported_version`) and sends nothing after `HELLO`.

use std::collections::VecDeque;

use vmbmmio_guest::channel::{ChannelError, PacketChannel, Transaction};
use vmbmmio_guest::session::{DeviceFacts, ProtocolSession, SessionError};
use vmbmmio_proto::guest::{HEADER_SIZE, HostInfo, Kind, encode_hello_reply};
use vmbmmio_proto::ioctl::WireGuid;

/// A host of a later protocol generation: versions 2.0 to 3.0 only.
const FUTURE: HostInfo = HostInfo {
    min_version: 0x0002_0000,
    max_version: 0x0003_0000,
    ..HostInfo::V1
};

/// Answers every request with `FUTURE`'s `HELLO_REPLY`.
#[derive(Default)]
struct FutureHost {
    replies: VecDeque<(Transaction, Vec<u8>)>,
}

impl PacketChannel for FutureHost {
    fn send(&mut self, transaction: Transaction, bytes: &[u8]) -> Result<(), ChannelError> {
        let _ = bytes;
        let mut reply = vec![0u8; 256];
        let len = encode_hello_reply(&mut reply, transaction, &FUTURE).unwrap();
        reply.truncate(len);
        self.replies.push_back((transaction, reply));
        Ok(())
    }

    fn next_completion(&mut self) -> Result<Option<(Transaction, Vec<u8>)>, ChannelError> {
        Ok(self.replies.pop_front())
    }

    fn wait(&mut self, _timeout_ms: u32) -> Result<(), ChannelError> {
        Ok(())
    }
}

fn facts() -> DeviceFacts {
    DeviceFacts {
        instance: WireGuid::from_u128(1),
        segment: 0,
        bus: 0,
        devfn: 0,
        bar_index: 2,
        bar_base: 0x10_0000_0000,
        bar_size: 0x1_0000,
        reservation: None,
    }
}

#[test]
fn a_host_of_another_protocol_generation_is_refused_with_its_versions() {
    let result = ProtocolSession::start(FutureHost::default(), facts());
    let Err(error) = result else {
        panic!("a host without a common version was accepted");
    };
    assert_eq!(
        error,
        SessionError::UnsupportedVersion {
            host: (0x0002_0000, 0x0003_0000)
        }
    );
    assert_eq!(error.kind(), "unsupported_version");
    let message = error.to_string();
    assert!(message.contains("0x20000..=0x30000"), "{message}");
    assert!(message.contains("update"), "{message}");
}

#[test]
fn nothing_follows_the_hello_when_no_version_is_common() {
    struct Recording(FutureHost, std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>>);
    impl PacketChannel for Recording {
        fn send(&mut self, transaction: Transaction, bytes: &[u8]) -> Result<(), ChannelError> {
            self.1.borrow_mut().push(bytes.to_vec());
            self.0.send(transaction, bytes)
        }
        fn next_completion(&mut self) -> Result<Option<(Transaction, Vec<u8>)>, ChannelError> {
            self.0.next_completion()
        }
        fn wait(&mut self, timeout_ms: u32) -> Result<(), ChannelError> {
            self.0.wait(timeout_ms)
        }
    }
    let sent = std::rc::Rc::default();
    let _refused = ProtocolSession::start(
        Recording(FutureHost::default(), std::rc::Rc::clone(&sent)),
        facts(),
    );
    let sent = sent.borrow();
    assert_eq!(sent.len(), 1, "only HELLO goes out");
    let kind = sent[0].get(..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    assert_eq!(kind, Some(Kind::Hello as u16));
    assert!(sent[0].len() >= HEADER_SIZE);
}
