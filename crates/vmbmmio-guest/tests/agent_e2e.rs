//! The `vmbmmio-guest` binary end to end: its session commands (`status`, `read`, `write`,
//! `verify`, `serve`) against a fake sysfs tree and a fake `/dev/uio0` whose host is the
//! driver's real guest-packet handler (`hvsim::agent_peer::UioHost`).
//!
//! The fake device is a regular file: its first bytes are the ring map (`txrx_rings`, which
//! the agent maps at offset 0 of the node), and the agent's doorbell appends its 4-byte
//! `irqcontrol` values after them (`O_APPEND`, `src/linux/doorbell.rs`), so the signals are
//! counted from the file's growth. Each open of a real `uio_hv_generic` node opens the channel
//! with fresh rings (`hv_uio_open` → `vmbus_connect_ring`; the last close disconnects it,
//! Linux `drivers/uio/uio_hv_generic.c`), so every invocation gets a zeroed file and a host of
//! its own: a thread owning a fresh simulated host (its KMCL is thread-local) that steps every
//! millisecond over its own mapping of the same file, backing the regions when the guest is
//! READY and unmapping them when it releases. The BAR is the function's `resource2_wc`, a
//! regular file of the BAR's size that persists across invocations.
//!
//! After each invocation the host is closed: nothing may be left over (the driver's section
//! ledger, objects, KMCL rules) and the guest must have said `RELEASING` before it exited.
#![cfg(target_os = "linux")]

#[path = "support/consumer.rs"]
mod consumer;
#[path = "support/fake_sysfs.rs"]
mod fake_sysfs;
#[path = "support/fake_uio.rs"]
mod fake_uio;

use fake_uio::{
    HARD_TIMEOUT, Host, HostReport, HostSetup, NAMES, SIZES, TYPE_TEXT, VM_ID, World, ring_map_size,
};
use vmbmmio_core::control::STATUS_NOT_SUPPORTED;
use vmbmmio_proto::ioctl::SectionAccess;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One invocation's results.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    host: HostReport,
    /// Bytes the doorbell appended to the fake node.
    doorbell_bytes: u64,
}

impl Run {
    /// The JSON object on stdout (the last line for `serve`).
    fn json(&self) -> Value {
        let line = self.stdout.lines().last().unwrap_or("");
        serde_json::from_str(line).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {:?}; stderr {:?}",
                self.stdout, self.stderr
            )
        })
    }

    fn error_kind(&self) -> String {
        self.json()["error"]["kind"]
            .as_str()
            .unwrap_or("<none>")
            .to_owned()
    }
}

impl World {
    /// The agent's command line for `args` (`--json` included).
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vmbmmio-guest"));
        command
            .arg("--sysfs")
            .arg(self.sysfs.root())
            .arg("--dev")
            .arg(self.sysfs.path("dev"))
            .args(["--interface-type", TYPE_TEXT, "--json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs the agent with `args` against a fresh host (one that backs the regions if
    /// `backs`), checks the host was left balanced and the guest released, and returns what
    /// happened.
    fn run_with(&self, args: &[&str], backs: bool) -> Run {
        let host = Host::start(&self.node(), backs);
        let mut agent = Agent::spawn(self.command(args));
        let stdout = collect(agent.0.stdout.take().expect("piped stdout"));
        let stderr = collect(agent.0.stderr.take().expect("piped stderr"));
        let status = wait_or_kill(&mut agent.0, HARD_TIMEOUT, args);
        let run = self.finish(host, status, join(stdout), join(stderr));
        run.check_released(args);
        run
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, true)
    }

    /// Runs the agent with `args` against a fresh host of `setup`; `meanwhile` runs on the
    /// test's thread with the host while the agent runs, and `after` once it exited (before
    /// the host closes). Checked as [`World::run_with`].
    fn run_setup<T>(
        &self,
        args: &[&str],
        setup: HostSetup,
        meanwhile: impl FnOnce(&Host, &mut Agent),
        after: impl FnOnce(&Host) -> T,
    ) -> (Run, T) {
        let host = Host::start_with(&self.node(), setup);
        if setup.named {
            let attached = host.run(|side| {
                side.consumers.attach(
                    side.host.session_mut(),
                    VM_ID,
                    "frames",
                    SectionAccess::Read,
                )
            });
            assert_eq!(attached, Ok(0));
        }
        let mut agent = Agent::spawn(self.command(args));
        let stdout = collect(agent.0.stdout.take().expect("piped stdout"));
        let stderr = collect(agent.0.stderr.take().expect("piped stderr"));
        meanwhile(&host, &mut agent);
        let status = wait_or_kill(&mut agent.0, HARD_TIMEOUT, args);
        let found = after(&host);
        let run = self.finish(host, status, join(stdout), join(stderr));
        run.check_released(args);
        (run, found)
    }

    fn finish(&self, host: Host, status: ExitStatus, stdout: String, stderr: String) -> Run {
        let host = host.finish();
        let len = std::fs::metadata(self.node()).map_or(0, |meta| meta.len());
        Run {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
            host,
            doorbell_bytes: len.saturating_sub(ring_map_size()),
        }
    }
}

impl Run {
    /// The host closed balanced, and the guest said RELEASING before it exited.
    fn check_released(&self, args: &[&str]) {
        assert!(
            self.host.left.is_empty(),
            "{args:?} left the host unbalanced: {}; {self:?}",
            self.host.left
        );
        assert!(
            self.host.saw_releasing,
            "{args:?}: the guest exited without RELEASING: {self:?}"
        );
    }
}

/// A running agent, killed if the test fails before it exited (so no `serve` outlives it).
struct Agent(Child);

impl Agent {
    fn spawn(mut command: Command) -> Self {
        Self(command.spawn().expect("run the agent"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads a child's pipe to its end on a thread (so a full pipe never blocks the child).
fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn join(reader: JoinHandle<String>) -> String {
    reader.join().unwrap_or_default()
}

/// Waits for `child`, killing it (and failing the test) after `limit`.
fn wait_or_kill(child: &mut Child, limit: Duration, args: &[&str]) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the agent") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent hung: {args:?} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The regions of a `session.layout` object: (id, offset, size).
fn regions(layout: &Value) -> Vec<(u64, u64, u64)> {
    layout["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .map(|region| {
            (
                region["id"].as_u64().expect("id"),
                region["offset"].as_u64().expect("offset"),
                region["size"].as_u64().expect("size"),
            )
        })
        .collect()
}

#[test]
fn status_opens_a_session_reports_it_and_releases() {
    let world = World::new();
    let run = world.run(&["status"]);
    assert_eq!(run.code, 0, "{run:?}");
    let value = run.json();
    assert_eq!(value["ok"], true, "{value}");
    assert_eq!(value["channel"]["bound"], true);
    assert_eq!(value["function"]["bar_size"], world.bar_size);
    let session = &value["session"];
    let object = session.as_object().expect("a session object");
    for field in [
        "protocol_version",
        "host_versions",
        "state",
        "generation",
        "may_use",
        "layout",
        "counters",
    ] {
        assert!(object.contains_key(field), "{field} missing: {session}");
    }
    let version = session["protocol_version"].as_u64().expect("a version");
    let min = session["host_versions"]["min_version"]
        .as_u64()
        .expect("min");
    let max = session["host_versions"]["max_version"]
        .as_u64()
        .expect("max");
    assert!(min <= version && version <= max, "{session}");
    let state = session["state"].as_str().expect("a state");
    assert!(["Ready", "Mapped"].contains(&state), "{session}");
    assert!(session["generation"].as_u64().expect("a generation") >= 1);
    assert!(session["may_use"].is_boolean());
    assert!(session["counters"]["interrupts"].is_u64(), "{session}");
    // Status waits (briefly) for the host to back the regions, so a running host's layout is
    // there.
    let layout = &session["layout"];
    assert_eq!(state, "Mapped", "{session}");
    assert_eq!(session["may_use"], true, "{session}");
    {
        assert_eq!(layout["bar_size"], world.bar_size);
        let shown: Vec<(u64, u64)> = regions(layout)
            .iter()
            .map(|&(_, offset, size)| (offset, size))
            .collect();
        let laid_out: Vec<(u64, u64)> = run
            .host
            .regions
            .iter()
            .map(|region| (region.offset, region.size))
            .collect();
        assert_eq!(shown, laid_out, "{layout}");
    }
    assert_eq!(run.host.regions.len(), SIZES.len());
    for (region, size) in run.host.regions.iter().zip(SIZES) {
        assert_eq!(region.size, size);
        assert!(region.offset + region.size <= world.bar_size);
    }
    // The guest spoke: HELLO, SELECT_VERSION, two reports, READY, WAIT_EVENT, RELEASING and
    // the decode-off report.
    assert!(run.host.guest_packets >= 8, "{run:?}");
}

#[test]
fn a_write_is_read_back_by_the_next_invocation_and_lands_in_the_bar_at_the_region() {
    let world = World::new();
    let write = world.run(&[
        "write", "0", "--offset", "16", "--byte", "0x76", "--length", "7",
    ]);
    assert_eq!(write.code, 0, "{write:?}");
    assert_eq!(write.json()["length"], 7);
    assert!(write.host.ever_backed, "{write:?}");

    let read = world.run(&["read", "0", "--offset", "15", "--length", "9"]);
    assert_eq!(read.code, 0, "{read:?}");
    assert_eq!(read.json()["hex"], "007676767676767600", "{read:?}");
    assert_bytes_in_bar_region(&world, &read, 0, 16, b"vvvvvvv");
}

/// The `--pattern` form of the same (`docs/guest-agent.md`'s example pattern).
#[test]
fn a_pattern_write_is_read_back_and_lands_in_the_bar_at_the_region() {
    let world = World::new();
    let write = world.run(&[
        "write",
        "0",
        "--offset",
        "16",
        "--pattern",
        "766d626d6d696f",
    ]);
    assert_eq!(write.code, 0, "{write:?}");
    assert_eq!(write.json()["length"], 7);

    let read = world.run(&["read", "0", "--offset", "16", "--length", "7"]);
    assert_eq!(read.code, 0, "{read:?}");
    assert_eq!(read.json()["hex"], "766d626d6d696f", "{read:?}");
    assert_bytes_in_bar_region(&world, &read, 0, 16, b"vmbmmio");
}

/// `bytes` are in the BAR file at `offset` of region `id`, placed where the driver's layout
/// puts the region (the layout the guest reads with `GET_LAYOUT` once the regions are backed).
fn assert_bytes_in_bar_region(world: &World, run: &Run, id: usize, offset: u64, bytes: &[u8]) {
    let region = *run.host.regions.get(id).expect("the region");
    let end = offset + u64::try_from(bytes.len()).expect("length");
    assert!(end <= region.size, "{region:?}");
    let bar = std::fs::read(world.bar_file()).expect("the BAR file");
    let at = usize::try_from(region.offset + offset).expect("offset");
    assert_eq!(bar.get(at..at + bytes.len()), Some(bytes), "{region:?}");
}

#[test]
fn verify_passes_and_an_access_past_the_region_exits_2_after_releasing() {
    let world = World::new();
    let verify = world.run(&["verify", "0"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    let value = verify.json();
    assert_eq!(value["mismatches"], 0, "{value}");
    let size = value["length"].as_u64().expect("the region's length");
    assert_eq!(size, SIZES[0]);

    let offset = size.to_string();
    let past = world.run(&["read", "0", "--offset", &offset, "--length", "1"]);
    assert_eq!(past.code, 2, "{past:?}");
    assert_eq!(past.error_kind(), "out_of_bounds", "{past:?}");
}

#[test]
fn serve_follows_the_host_and_releases_on_sigterm() {
    let world = World::new();
    let host = Host::start(&world.node(), true);
    let mut agent = Agent::spawn(world.command(&["serve"]));
    let lines = lines_of(agent.0.stdout.take().expect("piped stdout"));
    let stderr = collect(agent.0.stderr.take().expect("piped stderr"));

    let mut seen = Vec::new();
    let ready = next_line(&lines, &mut seen, |line| line["event"] == "ready");
    assert!(ready["session"].is_object(), "{ready}");
    let backed = next_line(&lines, &mut seen, |line| line["change"] == "backed");
    assert!(backed["generation"].as_u64().expect("a generation") >= 1);

    let pid = i32::try_from(agent.0.id()).expect("a pid");
    // SAFETY: `kill` sends a signal to the agent process this test spawned (and has not yet
    // waited for, so the pid is still its own).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_or_kill(&mut agent.0, HARD_TIMEOUT, &["serve"]);
    let rest: Vec<String> = lines.iter().collect();
    let run = world.finish(host, status, rest.join("\n"), join(stderr));
    assert_eq!(run.code, 0, "{run:?}; before: {seen:?}");
    let last = run.json();
    assert_eq!(last["event"], "released", "{run:?}");
    assert_eq!(last["ok"], true);
    assert!(run.host.ever_backed, "{run:?}");
    run.check_released(&["serve"]);
}

/// The lines of a child's stdout, as they come.
fn lines_of(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (send, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// The next line that is a JSON object matching `wanted` (earlier lines go to `seen`).
fn next_line(
    lines: &Receiver<String>,
    seen: &mut Vec<String>,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no such line; saw {seen:?}"));
        seen.push(line.clone());
        if let Ok(value) = serde_json::from_str::<Value>(&line)
            && wanted(&value)
        {
            return value;
        }
    }
}

#[test]
fn the_agent_rings_the_doorbell_after_the_rings() {
    let world = World::new();
    let run = world.run(&["read", "0", "--length", "16"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.doorbell_bytes > 0, "{run:?}");
    assert_eq!(run.doorbell_bytes % 4, 0, "{run:?}");
}

#[test]
fn a_host_that_never_backs_times_out_as_not_backed_after_releasing() {
    let world = World::new();
    let run = world.run_with(&["read", "0", "--timeout-ms", "300"], false);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.error_kind(), "not_backed", "{run:?}");
    assert!(!run.host.ever_backed);
}

#[test]
fn status_shows_the_regions_names_access_and_doorbells() {
    let world = World::new();
    let (run, ()) = world.run_setup(&["status"], HostSetup::NAMED, |_, _| {}, |_| {});
    assert_eq!(run.code, 0, "{run:?}");
    let session = &run.json()["session"];
    assert_eq!(session["doorbells"], true, "{session}");
    let regions = session["layout"]["regions"].as_array().expect("regions");
    let shown: Vec<(&str, &str)> = regions
        .iter()
        .map(|region| {
            (
                region["name"].as_str().expect("a name"),
                region["access"].as_str().expect("an access"),
            )
        })
        .collect();
    let named: Vec<&str> = NAMES.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        shown.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        named
    );
    assert!(
        shown.iter().all(|(_, access)| *access == "read_write"),
        "{shown:?}"
    );
    for counter in ["doorbells_rung", "doorbells_refused", "doorbells_heard"] {
        assert!(
            session["counters"][counter].is_u64(),
            "{counter}: {session}"
        );
    }
}

#[test]
fn ring_reaches_the_regions_host_consumer() {
    let world = World::new();
    let (run, taken) = world.run_setup(
        &["ring", "frames", "--value", "0x2a"],
        HostSetup::NAMED,
        |_, _| {},
        |host| host.run(|side| side.consumers.take(side.host.session_mut(), 0)),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let value = run.json();
    assert_eq!(value["region"], "frames", "{value}");
    assert_eq!(value["region_id"], 0);
    assert_eq!(value["value"], 42);
    let taken = taken.expect("TAKE_DOORBELLS");
    assert_eq!((taken.count, taken.last_value), (1, 42), "{taken:?}");
}

#[test]
fn wait_prints_host_consumers_doorbells_as_json() {
    let world = World::new();
    let (run, ()) = world.run_setup(
        &["wait", "frames", "--count", "2", "--timeout", "30s"],
        HostSetup::NAMED,
        |host, agent| {
            // Rings until the agent heard two (rings it had not heard yet coalesce).
            let deadline = Instant::now() + HARD_TIMEOUT;
            let mut value = 0u64;
            while matches!(agent.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                value += 1;
                let rung =
                    host.run(move |side| side.consumers.ring(side.host.session_mut(), 0, value));
                // Refused until the agent's conversation selected protocol 1.1.
                assert!(
                    rung.is_ok() || rung == Err(STATUS_NOT_SUPPORTED),
                    "{rung:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        },
        |_| {},
    );
    assert_eq!(run.code, 0, "{run:?}");
    let value = run.json();
    assert_eq!(value["count"], 2, "{value}");
    let doorbells = value["doorbells"].as_array().expect("doorbells");
    let values: Vec<u64> = doorbells
        .iter()
        .map(|doorbell| {
            assert_eq!(doorbell["region"], "frames", "{doorbell}");
            assert_eq!(doorbell["region_id"], 0, "{doorbell}");
            doorbell["value"].as_u64().expect("a value")
        })
        .collect();
    assert!(values[0] >= 1 && values[0] < values[1], "{values:?}");
}

#[test]
fn wait_exits_1_when_no_doorbell_came_in_time() {
    let world = World::new();
    let (run, ()) = world.run_setup(
        &["wait", "--timeout", "300ms"],
        HostSetup::NAMED,
        |_, _| {},
        |_| {},
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.error_kind(), "timed_out", "{run:?}");
    assert_eq!(run.json()["count"], 0);
}

#[test]
fn a_1_0_host_refuses_ring_and_wait_as_doorbells_unsupported() {
    let world = World::new();
    let setup = HostSetup {
        only_1_0: true,
        ..HostSetup::NAMED
    };
    for args in [&["ring", "frames"][..], &["wait", "--timeout", "5s"][..]] {
        let (run, ()) = world.run_setup(args, setup, |_, _| {}, |_| {});
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert_eq!(run.error_kind(), "doorbells_unsupported", "{run:?}");
    }
}
