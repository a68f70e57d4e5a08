//! The commands: `status`, `read`, `write`, `verify`, `serve`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vmbmmio_guest::discover::Located;
use vmbmmio_guest::linux::{AgentError, BarCheck, RegionWindow};
use vmbmmio_guest::{RegionView, Session};

use super::args::{Cli, ReadArgs, VerifyArgs, WriteArgs};
use super::failure::{Failure, failure};
use super::found;
use super::session_json::{change_json, session_json};
use vmbmmio_cli_support::bytes::{hex, hex_dump, pattern_byte, write_unit};
use vmbmmio_cli_support::output::text_of;

/// The most bytes `read` prints.
const MAX_READ: u64 = 16 << 20;
/// The longest `status` waits for the host to back the regions.
const STATUS_WAIT: Duration = Duration::from_secs(1);
/// How long `serve` waits for the host's signal before it looks around again.
const SERVE_TICK: Duration = Duration::from_millis(250);
/// How often `serve` checks whether the BAR moved.
const BAR_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long `serve` waits before it opens the session again after the host closed it.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// `status`: the discovery part always, the session when it opens.
pub fn status(cli: &Cli, discover_only: bool) -> (Value, Option<Failure>) {
    let mut out = json!({
        "interface_type": cli.interface_type,
        "channel": null,
        "function": null,
        "session": null,
    });
    let failure = status_into(cli, discover_only, &mut out).err();
    (out, failure)
}

/// Takes the discovery steps one by one so the output shows what was found before a failure.
fn status_into(cli: &Cli, discover_only: bool, out: &mut Value) -> Result<(), Failure> {
    let options = found::options(cli)?;
    let (root, target) = (&options.sysfs, options.target);
    let mut channel = target.channel(root).map_err(failure)?;
    out["channel"] = found::channel_json(&channel, &options.dev);
    if discover_only {
        let function = target.function(root, &channel).map_err(failure)?;
        out["function"] = found::function_json(&function);
        return Ok(());
    }
    let uio = target.uio(root, &mut channel).map_err(failure)?;
    out["channel"] = found::channel_json(&channel, &options.dev);
    let function = target.function(root, &channel).map_err(failure)?;
    out["function"] = found::function_json(&function);
    let located = Located {
        channel,
        uio,
        function,
    };
    let mut session = Session::start(&options, located).map_err(failure)?;
    // Give the host a moment to back the regions (a running device host does at once), so the
    // layout is shown; regions not backed (or a closed conversation) are shown, not failed.
    let wait = Duration::from_millis(u64::from(cli.timeout_ms)).min(STATUS_WAIT);
    let followed = match session.wait_backed(wait) {
        Ok(_) | Err(AgentError::NotBacked { .. } | AgentError::Closed) => Ok(()),
        Err(error) => Err(error),
    };
    out["session"] = session_json(&mut session);
    let released = session.release();
    followed.map_err(failure)?;
    released.map_err(failure)?;
    Ok(())
}

/// Opens the session, waits until the regions are backed, runs `work` on the region, then
/// releases (before the BAR is unmapped).
fn with_region(
    cli: &Cli,
    which: &str,
    work: impl FnOnce(&RegionView<'_>) -> Result<Value, (Value, Failure)>,
) -> Result<Value, (Value, Failure)> {
    let fail = |failure: Failure| (json!({}), failure);
    let options = found::options(cli).map_err(fail)?;
    let mut session = Session::open(&options).map_err(|error| fail(failure(error)))?;
    session
        .wait_backed(Duration::from_millis(u64::from(cli.timeout_ms)))
        .map_err(|error| fail(failure(error)))?;
    let result = match session.region(which) {
        Ok(view) => work(&view),
        Err(error) => Err(fail(failure(error))),
    };
    let released = session.release();
    let value = result?;
    released.map_err(|error| fail(failure(error)))?;
    Ok(value)
}

/// Checks `offset..offset + length` lies in the region (before anything is allocated).
fn check_range(window: &RegionWindow<'_>, offset: u64, length: u64) -> Result<usize, Failure> {
    let inside = offset
        .checked_add(length)
        .is_some_and(|end| end <= window.len());
    if !inside {
        return Err(Failure::setup(
            "out_of_bounds",
            format!(
                "{length} bytes at offset {offset:#x} are outside the region ({:#x} bytes)",
                window.len()
            ),
        ));
    }
    usize::try_from(length).map_err(|_| Failure::setup("out_of_bounds", "too long"))
}

/// `read`.
pub fn read(cli: &Cli, args: &ReadArgs) -> Result<Value, (Value, Failure)> {
    let fail = |failure: Failure| (json!({}), failure);
    if args.length > MAX_READ {
        return Err(fail(Failure::setup(
            "usage",
            format!("--length is at most {MAX_READ} bytes"),
        )));
    }
    with_region(cli, &args.region, |view| {
        let (window, region) = (view.window(), view.region());
        let length = check_range(window, args.offset, args.length).map_err(fail)?;
        let mut bytes = vec![0u8; length];
        window
            .read(args.offset, &mut bytes)
            .map_err(|error| fail(failure(error)))?;
        Ok(json!({
            "region": region.name.as_str(),
            "offset": args.offset,
            "length": args.length,
            "hex": hex(&bytes),
            "text": hex_dump(args.offset, &bytes),
        }))
    })
}

/// `write`.
pub fn write(cli: &Cli, args: &WriteArgs) -> Result<Value, (Value, Failure)> {
    let fail = |failure: Failure| (json!({}), failure);
    let (unit, length) = write_unit(args.pattern.as_ref(), args.byte, args.length).map_err(fail)?;
    with_region(cli, &args.region, |view| {
        let (window, region) = (view.window(), view.region());
        let length = check_range(window, args.offset, length).map_err(fail)?;
        let data: Vec<u8> = unit.iter().copied().cycle().take(length).collect();
        window
            .write(args.offset, &data)
            .map_err(|error| fail(failure(error)))?;
        Ok(json!({
            "region": region.name.as_str(),
            "offset": args.offset,
            "length": length,
            "text": format!("wrote {length} bytes at {:#x} in {}\n", args.offset, region.name.as_str()),
        }))
    })
}

/// `verify`: writes a pattern over the region (or its first `--length` bytes), reads it back.
pub fn verify(cli: &Cli, args: &VerifyArgs) -> Result<Value, (Value, Failure)> {
    let fail = |failure: Failure| (json!({}), failure);
    let seed = std::process::id()
        .to_le_bytes()
        .first()
        .copied()
        .unwrap_or(0x5a)
        | 1;
    with_region(cli, &args.region, |view| {
        let (window, region) = (view.window(), view.region());
        let length = args.length.unwrap_or(window.len());
        let length = check_range(window, 0, length).map_err(fail)?;
        let data: Vec<u8> = (0..length).map(|at| pattern_byte(at, seed)).collect();
        window
            .write(0, &data)
            .map_err(|error| fail(failure(error)))?;
        let mut back = vec![0u8; length];
        window
            .read(0, &mut back)
            .map_err(|error| fail(failure(error)))?;
        let mismatches: Vec<usize> = data
            .iter()
            .zip(back.iter())
            .enumerate()
            .filter(|(_, (wrote, read))| wrote != read)
            .map(|(at, _)| at)
            .collect();
        let value = json!({
            "region": region.name.as_str(),
            "length": length,
            "mismatches": mismatches.len(),
            "first_mismatch": mismatches.first(),
            "text": format!(
                "{}: {length} bytes written and read back, {} mismatches\n",
                region.name.as_str(),
                mismatches.len()
            ),
        });
        match mismatches.first() {
            None => Ok(value),
            Some(first) => Err((
                value,
                Failure::check(
                    "mismatch",
                    format!(
                        "{} of {length} bytes read back differ, the first at offset {first:#x}",
                        mismatches.len()
                    ),
                ),
            )),
        }
    })
}

/// Sleeps `duration` in short steps, returning early once `stop` is set.
fn sleep_unless(stop: &AtomicBool, duration: Duration) {
    let until = Instant::now() + duration;
    while !stop.load(Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `serve`: follows the host until SIGINT/SIGTERM, then releases. Opens the session again
/// when the host closes it; reports the BAR again when it moves.
pub fn serve(cli: &Cli) -> Result<Value, (Value, Failure)> {
    let fail = |failure: Failure| (json!({}), failure);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).map_err(|error| {
        fail(Failure::setup(
            "signals",
            format!("cannot handle SIGINT/SIGTERM: {error}"),
        ))
    })?;
    let options = found::options(cli).map_err(fail)?;
    let mut session = Session::open(&options).map_err(|error| fail(failure(error)))?;
    announce(
        cli,
        &json!({ "event": "ready", "session": session_json(&mut session) }),
    );
    let mut last_check = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if session.closed() {
            announce(cli, &json!({ "event": "closed" }));
            // Closing the uio file closes the channel; a new open starts a new conversation.
            drop(session);
            session = loop {
                sleep_unless(&stop, REOPEN_AFTER);
                if stop.load(Ordering::SeqCst) {
                    return Ok(json!({ "event": "stopped", "text": "stopped; exiting\n" }));
                }
                match Session::open(&options) {
                    Ok(mut reopened) => {
                        let value = session_json(&mut reopened);
                        announce(cli, &json!({ "event": "reopened", "session": value }));
                        break reopened;
                    }
                    Err(error) => announce(
                        cli,
                        &json!({ "event": "reopen_failed", "kind": error.kind(), "message": error.to_string() }),
                    ),
                }
            };
        }
        let changes = session
            .next_changes(SERVE_TICK)
            .map_err(|error| fail(failure(error)))?;
        for change in &changes {
            announce(cli, &change_json(change));
        }
        if !session.closed() && last_check.elapsed() >= BAR_CHECK_EVERY {
            last_check = Instant::now();
            match session.check_bar().map_err(|error| fail(failure(error)))? {
                BarCheck::Unchanged => {}
                BarCheck::Moved { base, size } => announce(
                    cli,
                    &json!({ "event": "bar_reported", "bar_base": base, "bar_size": size }),
                ),
                BarCheck::Gone => announce(cli, &json!({ "event": "function_gone" })),
            }
        }
    }
    session.release().map_err(|error| fail(failure(error)))?;
    Ok(json!({ "event": "released", "text": "released; exiting\n" }))
}

/// One line of `serve`'s output.
fn announce(cli: &Cli, value: &Value) {
    if cli.json {
        println!("{value}");
    } else {
        println!("{}", text_of(value, 0).replace('\n', "; "));
    }
}
