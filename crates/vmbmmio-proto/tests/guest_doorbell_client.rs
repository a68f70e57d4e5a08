//! The guest library with protocol 1.1: it selects 1.1 when the host offers it, knows which
//! version it selected, sends `DOORBELL` only in 1.1 and checks replies with that version's
//! rules (a 1.0 conversation refuses every doorbell field, as before).

use vmbmmio_proto::guest::*;

/// Replies built with the host's encoders.
struct Host {
    buf: Vec<u8>,
}

impl Host {
    fn new() -> Self {
        Self { buf: vec![0; 2048] }
    }

    fn hello_reply(&mut self, id: u64, info: HostInfo) -> Vec<u8> {
        let len = encode_hello_reply(&mut self.buf, id, &info).unwrap();
        self.buf[..len].to_vec()
    }

    fn ack(&mut self, id: u64, kind: Kind) -> Vec<u8> {
        let len = encode_ack(&mut self.buf, id, kind, 1).unwrap();
        self.buf[..len].to_vec()
    }

    fn event(&mut self, id: u64, event: Event) -> Vec<u8> {
        let len = encode_event_in(&mut self.buf, id, &event, PROTOCOL_VERSION_1_1).unwrap();
        self.buf[..len].to_vec()
    }

    fn error(&mut self, id: u64, code: ErrorCode, kind: Kind, left: u32) -> Vec<u8> {
        let len = encode_error(&mut self.buf, id, code, kind.to_u16(), left).unwrap();
        self.buf[..len].to_vec()
    }

    fn layout(&mut self, id: u64, regions: &[Region]) -> Vec<u8> {
        let len = encode_layout(&mut self.buf, id, 1, 1 << 20, regions).unwrap();
        self.buf[..len].to_vec()
    }
}

/// A client that said `HELLO` to a host stating `info` and selected its version.
fn versioned(host: &mut Host, info: HostInfo) -> GuestClient {
    let mut client = GuestClient::new();
    let mut out = [0u8; 64];
    let hello = client.hello(&mut out).unwrap();
    client
        .on_reply(&host.hello_reply(hello.request_id, info))
        .unwrap();
    let select = client.select_version(&mut out).unwrap();
    client
        .on_reply(&host.ack(select.request_id, Kind::SelectVersion))
        .unwrap();
    client
}

#[test]
fn a_1_1_host_gets_1_1_and_doorbells_work() {
    let mut host = Host::new();
    let mut client = versioned(&mut host, HostInfo::V1_1);
    assert_eq!(client.version(), Some(PROTOCOL_VERSION_1_1));
    assert_eq!(client.state(), ClientState::Versioned);

    let mut out = [0u8; 64];
    let sent = client.doorbell(&mut out, 3, 42).unwrap();
    assert_eq!(
        parse_request_in(&out[..sent.len], PROTOCOL_VERSION_1_1).map(|r| r.body),
        Ok(RequestBody::Doorbell {
            region: 3,
            value: 42
        })
    );
    assert_eq!(
        client.outstanding(),
        Some((sent.request_id, Kind::Doorbell))
    );
    let event = client
        .on_reply(&host.ack(sent.request_id, Kind::Doorbell))
        .unwrap();
    assert!(matches!(
        event,
        ClientEvent::Acked(Ack {
            acked_kind: Kind::Doorbell,
            ..
        })
    ));
    assert_eq!(client.state(), ClientState::Versioned);

    // RATE_LIMITED is not counted: the allowance stays.
    let sent = client.doorbell(&mut out, 3, 43).unwrap();
    let event = client
        .on_reply(&host.error(sent.request_id, ErrorCode::RateLimited, Kind::Doorbell, 16))
        .unwrap();
    assert!(matches!(
        event,
        ClientEvent::Error(ErrorInfo {
            code: ErrorCode::RateLimited,
            ..
        })
    ));
    assert_eq!(client.errors_left(), Some(16));
    assert_eq!(client.state(), ClientState::Versioned);

    // A DOORBELL event answers the wait and changes no state.
    let wait = client.wait_event(&mut out).unwrap();
    let doorbell = Event::doorbell(1, 1, 2, 7);
    let event = client
        .on_reply(&host.event(wait.request_id, doorbell))
        .unwrap();
    assert_eq!(event, ClientEvent::Event(doorbell));
    assert_eq!(client.last_seen(), 1);
    assert_eq!(client.state(), ClientState::Versioned);
}

#[test]
fn a_1_1_client_refuses_doorbell_fields_on_other_events() {
    let mut host = Host::new();
    let mut client = versioned(&mut host, HostInfo::V1_1);
    let mut out = [0u8; 64];
    let wait = client.wait_event(&mut out).unwrap();
    let mut bytes = host.event(wait.request_id, Event::new(1, EventKind::RegionsMapped, 1));
    bytes[40] = 1;
    let before = client.clone();
    assert_eq!(
        client.on_reply(&bytes),
        Err(ClientError::BadReply(ReplyError::ReservedNotZero {
            offset: 40,
            got: 1
        }))
    );
    assert_eq!(client, before, "a refused reply changes nothing");
}

#[test]
fn a_1_0_host_gets_1_0_and_no_doorbells() {
    let mut host = Host::new();
    let mut client = versioned(&mut host, HostInfo::V1);
    assert_eq!(client.version(), Some(PROTOCOL_VERSION_1_0));
    let mut out = [0u8; 64];
    assert_eq!(
        client.doorbell(&mut out, 0, 1),
        Err(ClientError::NotInVersion {
            request: Kind::Doorbell,
            version: Some(PROTOCOL_VERSION_1_0)
        })
    );
    // A DOORBELL event is refused in 1.0 (its region byte is reserved there).
    let wait = client.wait_event(&mut out).unwrap();
    let bytes = host.event(wait.request_id, Event::doorbell(1, 1, 2, 7));
    assert_eq!(
        client.on_reply(&bytes),
        Err(ClientError::BadReply(ReplyError::ReservedNotZero {
            offset: 28,
            got: 2
        }))
    );
    // And an ERROR RATE_LIMITED is unknown in 1.0.
    let bytes = host.error(wait.request_id, ErrorCode::RateLimited, Kind::WaitEvent, 16);
    assert_eq!(
        client.on_reply(&bytes),
        Err(ClientError::BadReply(ReplyError::BadErrorCode { got: 10 }))
    );
}

#[test]
fn doorbell_needs_a_selected_version_and_a_known_region() {
    let mut host = Host::new();
    let mut client = GuestClient::new();
    let mut out = [0u8; 64];
    assert_eq!(
        client.doorbell(&mut out, 0, 1),
        Err(ClientError::NotInVersion {
            request: Kind::Doorbell,
            version: None
        })
    );
    let mut client = versioned(&mut host, HostInfo::V1_1);
    let get = client.get_layout(&mut out).unwrap();
    let region = Region {
        id: 0,
        access: RegionAccess::ReadWrite,
        state: RegionState::Unmapped,
        offset_pages: 0,
        length_pages: 1,
        name: RegionName::new("ring").unwrap(),
    };
    client
        .on_reply(&host.layout(get.request_id, &[region]))
        .unwrap();
    assert_eq!(
        client.doorbell(&mut out, 1, 1),
        Err(ClientError::NoSuchRegion {
            region: 1,
            count: 1
        })
    );
    assert!(client.doorbell(&mut out, 0, 1).is_ok());
}
