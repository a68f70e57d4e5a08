//! Issue 14 in the demo: a host application attaches to the guest's region `frames` by name
//! through the host library and exchanges a frame and doorbells with the guest's program in
//! both directions; the demo accounts for attachments and event references and ends with 0
//! leaked objects, and names what it assumes for the consumer path.

use hvsim::demo::{DemoOptions, run};

#[test]
fn the_host_application_and_the_guest_program_exchange_both_ways_and_nothing_leaks() {
    let mut out = Vec::new();
    let report = run(&DemoOptions::default(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(report.passed(), "{report:?}\n{text}");
    assert_eq!(report.leaked_objects, 0);
    let exchange = report.exchange.clone().expect("the host application ran");
    assert_eq!(exchange.bytes_verified, 1024);
    assert_eq!(exchange.mismatches, 0);
    assert_eq!(
        (exchange.doorbells_to_guest, exchange.doorbells_from_guest),
        (1, 1)
    );
    let order = [
        "host application: listed VM 6d1e0b6e-5a8f-4c2d-9e3b-7a410c5d2e01",
        "host application: attached `frames` of VM",
        "host application: asked `log` read-write: refused (access_denied)",
        "rings the guest (RING_GUEST 1)",
        "guest program: doorbell 1 on region 0: read a 1024-byte frame through the BAR",
        "guest program: rang region 0 back with 2",
        "host application: woken by the guest's doorbell (count 1, value 2)",
        "0 of 1024 bytes differ",
        "driver: attachments 1 made, 1 released; doorbell event references 1 taken, 1 released; \
         event objects 1 created, 1 destroyed",
        "host application and guest program: 1024 bytes went through `frames`",
    ];
    let mut at = 0;
    for needle in order {
        let found = text[at..]
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing or out of order:\n{text}"));
        at += found + needle.len();
    }
    for needle in [
        "MapViewOfFile of the section handle the driver opened in its process",
        "polls the simulated event object",
    ] {
        assert!(
            report.assumptions.iter().any(|a| a.contains(needle)),
            "{needle:?}: {:?}",
            report.assumptions
        );
    }
}

#[test]
fn without_a_frames_region_big_enough_the_exchange_is_skipped_and_said() {
    let mut out = Vec::new();
    let report = run(
        &DemoOptions {
            region_sizes: vec![4096],
            ..DemoOptions::default()
        },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(report.passed(), "{text}");
    assert_eq!(report.exchange, None);
    assert!(text.contains("host application: skipped"), "{text}");
}
