//! The mapping check (`probe --mapping`) run against the device host's test fakes: the real
//! sequence maps region 0 once the guest placed the BAR with decode on, the probe writes its
//! pattern through the view, a simulated guest acts, and the classification reads the facts.

mod support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use support::*;
use vmbmmio_devhost::clock::Clock;
use vmbmmio_devhost::driver::MappingState;
use vmbmmio_devhost::hresult::HResult;
use vmbmmio_devhost::probe::Verdict;
use vmbmmio_devhost::probe::classify::section_backed_mapping;
use vmbmmio_devhost::probe::mapping::{
    MappingRun, PATTERN_LEN, Say, WaitEnd, probe_pattern, run_mapping_probe,
};

/// What the simulated guest does once a range exists.
#[derive(Clone, Copy)]
enum Guest {
    /// Nothing.
    Idle,
    /// Writes through the section-backed range: the section changes, the emulator sees nothing.
    WritesThroughRange,
    /// Reads the region; the access reaches the emulator (the range is not in effect).
    ReadIntercepted,
}

/// The fake clock, plus the guest acting on the first sleep after a range exists.
struct ActingClock {
    inner: FakeClock,
    guest: Guest,
    acted: RefCell<bool>,
}

impl Clock for ActingClock {
    fn now(&self) -> Duration {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) {
        self.inner.sleep(duration);
        let fake = &self.inner.fake;
        if *self.acted.borrow() || fake.world().ranges.is_empty() {
            return;
        }
        *self.acted.borrow_mut() = true;
        match self.guest {
            Guest::Idle => {}
            Guest::WritesThroughRange => {
                let memory = fake.world().sections[0].clone();
                memory.lock().unwrap()[..4].copy_from_slice(b"gst!");
            }
            Guest::ReadIntercepted => {
                let emulator = fake.world().emulator.clone().unwrap();
                let mut value = [0u8; 8];
                // The region's first bytes: region 0 starts at BAR offset 0.
                emulator.read_intercepted_memory(2, 0, &mut value).unwrap();
                assert_eq!(
                    &value,
                    &probe_pattern()[..8],
                    "served from the same section"
                );
            }
        }
    }
}

fn run(
    fake: &Fake,
    guest: Guest,
    bound: Duration,
) -> vmbmmio_devhost::probe::mapping::MappingFacts {
    {
        let mut world = fake.world();
        world.start_after_sleeps = Some(2);
        world.program_bar_on_start = Some(BASE);
        world.stop_vm_after_release = true;
    }
    let clock = ActingClock {
        inner: FakeClock { fake: fake.clone() },
        guest,
        acted: RefCell::new(false),
    };
    let said: Rc<RefCell<Vec<String>>> = Rc::default();
    let sink = said.clone();
    let say: Say = Rc::new(RefCell::new(move |line: &str| {
        sink.borrow_mut().push(line.to_string())
    }));
    let facts = run_mapping_probe(
        "probe.toml",
        &config(),
        fake.backends(),
        &clock,
        &*stop_flag(),
        bound,
        say,
    );
    assert!(
        said.borrow()
            .iter()
            .any(|line| line.contains("VMBMMIO-PROBE-01") && line.contains("vmbmmio-guest verify")),
        "the user is told what to do in the guest: {:?}",
        said.borrow()
    );
    fake.world().assert_nothing_left();
    facts
}

#[test]
fn a_guest_write_through_the_range_answers_yes() {
    let fake = Fake::default();
    let facts = run(&fake, Guest::WritesThroughRange, Duration::from_secs(10));
    let MappingRun::Mapped(mapped) = &facts.run else {
        panic!("mapped: {:?}", facts.run);
    };
    assert_eq!(mapped.state, MappingState::SectionBacked);
    assert_eq!(mapped.wait_end, WaitEnd::GuestAccess);
    assert_eq!(mapped.bar_base, Some(BASE));
    assert_eq!(mapped.before.region, mapped.after.region);
    let head = mapped.head_after.as_ref().unwrap();
    assert_eq!(&head[..4], b"gst!");
    assert_eq!(&head[4..], &probe_pattern()[4..]);
    let outcome = section_backed_mapping(&facts);
    assert_eq!(outcome.verdict, Verdict::AnsweredYes, "{}", outcome.summary);
    assert!(facts.teardown.is_some(), "the device host was shut down");
    assert!(
        facts.events.iter().any(|event| event.contains("mapping")),
        "{:?}",
        facts.events
    );
}

#[test]
fn an_intercepted_guest_read_answers_no() {
    let fake = Fake::default();
    let facts = run(&fake, Guest::ReadIntercepted, Duration::from_secs(10));
    let MappingRun::Mapped(mapped) = &facts.run else {
        panic!("mapped: {:?}", facts.run);
    };
    assert_eq!(mapped.wait_end, WaitEnd::GuestAccess);
    assert_eq!(mapped.after.region, mapped.before.region + 1);
    assert_eq!(mapped.after.bar_reads, mapped.before.bar_reads + 1);
    assert_eq!(
        mapped.head_after.as_ref().unwrap(),
        &probe_pattern().to_vec()
    );
    let outcome = section_backed_mapping(&facts);
    assert_eq!(outcome.verdict, Verdict::AnsweredNo, "{}", outcome.summary);
    assert!(outcome.summary.contains("not in effect"));
}

#[test]
fn no_guest_access_within_the_bound_is_inconclusive() {
    let fake = Fake::default();
    let facts = run(&fake, Guest::Idle, Duration::from_secs(2));
    let MappingRun::Mapped(mapped) = &facts.run else {
        panic!("mapped: {:?}", facts.run);
    };
    assert_eq!(mapped.wait_end, WaitEnd::TimedOut);
    assert!(mapped.waited_ms >= 2000);
    assert_eq!(mapped.pattern.len(), PATTERN_LEN);
    let outcome = section_backed_mapping(&facts);
    assert_eq!(
        outcome.verdict,
        Verdict::Inconclusive,
        "{}",
        outcome.summary
    );
    let json = serde_json::to_value(&outcome.evidence).unwrap();
    assert_eq!(json["pattern_intact"], true);
    assert_eq!(json["wait_end"], "timed_out");
    assert_eq!(json["mapping"]["state"], "section_backed");
}

#[test]
fn a_refused_range_answers_no_with_the_hresult() {
    let fake = Fake::default();
    fake.world().create_error = Some(HResult::E_NOTIMPL);
    let facts = run(&fake, Guest::Idle, Duration::from_secs(1));
    let MappingRun::Mapped(mapped) = &facts.run else {
        panic!("mapped: {:?}", facts.run);
    };
    assert_eq!(
        mapped.state,
        MappingState::InterceptFallback {
            hresult: HResult::E_NOTIMPL
        }
    );
    let outcome = section_backed_mapping(&facts);
    assert_eq!(outcome.verdict, Verdict::AnsweredNo, "{}", outcome.summary);
    assert!(
        outcome.summary.contains("0x80004001"),
        "{}",
        outcome.summary
    );
}

#[test]
fn a_device_host_that_cannot_start_is_an_error_and_leaves_nothing() {
    let fake = Fake::default();
    fake.world().fail_at = Some(0);
    let facts = run_mapping_probe(
        "probe.toml",
        &config(),
        fake.backends(),
        &FakeClock { fake: fake.clone() },
        &*stop_flag(),
        Duration::from_secs(1),
        Rc::new(RefCell::new(|_: &str| {})),
    );
    assert!(
        matches!(facts.run, MappingRun::StartFailed(_)),
        "{:?}",
        facts.run
    );
    assert_eq!(facts.teardown, None);
    assert_eq!(section_backed_mapping(&facts).verdict, Verdict::Error);
    fake.world().assert_nothing_left();
}

#[test]
fn a_stop_before_the_vm_starts_is_inconclusive() {
    let fake = Fake::default();
    let stop = stop_flag();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let facts = run_mapping_probe(
        "probe.toml",
        &config(),
        fake.backends(),
        &FakeClock { fake: fake.clone() },
        &*stop,
        Duration::from_secs(1),
        Rc::new(RefCell::new(|_: &str| {})),
    );
    assert_eq!(facts.run, MappingRun::NotMapped("Stopped".to_string()));
    assert_eq!(
        section_backed_mapping(&facts).verdict,
        Verdict::Inconclusive
    );
    fake.world().assert_nothing_left();
}
