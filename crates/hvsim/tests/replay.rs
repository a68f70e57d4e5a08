//! `hvsim replay <DIR>` on a directory of good, bad and garbage packets: the exact report, the
//! allowance running out midway (later files still sent, and refused), entries that are not
//! packets skipped, an oversized file refused by the handler, and the simulated host balanced.

use std::path::{Path, PathBuf};
use std::process::Command;

use vmbmmio_proto::guest::{ERROR_LIMIT, RequestBody, encode_request};

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("hvsim-replay-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.0.join(name), bytes).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn request(id: u64, body: RequestBody) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let len = encode_request(&mut buf, id, &body).unwrap();
    buf[..len].to_vec()
}

/// The directory and the report it must produce. The tool negotiated with ids 1 and 2.
fn packets(dir: &TempDir) -> String {
    dir.write("01_get_layout", &request(3, RequestBody::GetLayout));
    dir.write(
        "02_wait_event",
        &request(4, RequestBody::WaitEvent { last_seen: 0 }),
    );
    dir.write("03_replayed", &request(4, RequestBody::GetLayout));
    dir.write(
        "04_second_wait",
        &request(5, RequestBody::WaitEvent { last_seen: 0 }),
    );
    dir.write("05_garbage", b"not a packet at all");
    dir.write("06_empty", b"");
    // A GET_LAYOUT header on 1 MiB: cut to the channel's 4096 bytes, refused for its length.
    let mut huge = request(7, RequestBody::GetLayout);
    huge.resize(1 << 20, 0xEE);
    dir.write("07_huge", &huge);
    std::fs::create_dir(dir.0.join("08_a_directory")).unwrap();
    dir.write("09_ready_too_early", &request(6, RequestBody::Ready));
    let mut expected = vec![
        "01_get_layout accepted".to_string(),
        "02_wait_event accepted".into(),
        "03_replayed rejected:REPLAYED".into(),
        "04_second_wait rejected:BUSY".into(),
        "05_garbage rejected:UNKNOWN_KIND".into(),
        "06_empty rejected:MALFORMED".into(),
        "07_huge rejected:MALFORMED".into(),
        "08_a_directory skipped:not-a-file".into(),
        "09_ready_too_early rejected:OUT_OF_ORDER".into(),
    ];
    // Counted so far: REPLAYED, UNKNOWN_KIND, MALFORMED twice, OUT_OF_ORDER.
    let left = ERROR_LIMIT - 5;
    for n in 0..left {
        let name = format!("1{n:02}_short");
        dir.write(&name, &[0x01, 0x00, 0x00]);
        expected.push(format!("{name} rejected:MALFORMED"));
    }
    dir.write("2_hello_after_the_stop", &request(100, RequestBody::Hello));
    expected.push("2_hello_after_the_stop rejected:CHANNEL_CLOSING".into());
    let packets = 8 + left + 1;
    let accepted = 2;
    expected.push(format!(
        "replay: {packets} packets, {accepted} accepted, {} rejected, channel closed",
        packets - accepted
    ));
    expected.join("\n") + "\n"
}

#[test]
fn replay_reports_every_file_and_keeps_going_after_the_channel_closes() {
    let dir = TempDir::new("lib");
    let expected = packets(&dir);
    let mut out = Vec::new();
    let summary = hvsim::replay::run(&dir.0, &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    assert!(!summary.channel_open);
}

#[test]
fn the_command_line_prints_the_same_report() {
    let dir = TempDir::new("cli");
    let expected = packets(&dir);
    let output = Command::new(env!("CARGO_BIN_EXE_hvsim"))
        .arg("replay")
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);
}

#[test]
fn a_good_conversation_leaves_the_channel_open() {
    let dir = TempDir::new("good");
    dir.write("a", &request(3, RequestBody::GetLayout));
    dir.write("b", &request(4, RequestBody::ReportReservation(None)));
    let mut out = Vec::new();
    let summary = hvsim::replay::run(&dir.0, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "a accepted\nb accepted\nreplay: 2 packets, 2 accepted, 0 rejected, channel open\n"
    );
    assert!(summary.channel_open);
}

#[test]
fn a_missing_directory_is_an_error_not_a_crash() {
    let mut out = Vec::new();
    assert!(hvsim::replay::run(Path::new("/nonexistent/hvsim-replay"), &mut out).is_err());
}
