//! The doorbell commands (protocol 1.1): `ring` tells a region's host consumers "look", `wait`
//! waits for theirs. Doorbells are interrupts, not a queue (rings not yet heard coalesce, the
//! latest value wins); the data goes through the memory (`docs/guest-agent.md`, "Doorbells").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vmbmmio_guest::linux::AgentError;
use vmbmmio_guest::session::SessionError;
use vmbmmio_guest::{Doorbell, Session};

use super::args::{Cli, RingArgs, WaitArgs};
use super::failure::{Failure, failure};
use super::found;

/// The longest one wait of `wait` lasts before it looks at the stop flag again.
const WAIT_STEP: Duration = Duration::from_millis(250);

/// Opens the session, fails at once when the host has no doorbells, and waits until the
/// regions are backed (their names come with the layout).
fn open(cli: &Cli) -> Result<Session, Failure> {
    let options = found::options(cli)?;
    let mut session = Session::open(&options).map_err(failure)?;
    if !session.doorbells() {
        let version = session.protocol().conversation().client.version();
        let error = AgentError::from(SessionError::DoorbellsUnsupported { version });
        let _ = session.release();
        return Err(failure(error));
    }
    if let Err(error) = session.wait_backed(Duration::from_millis(u64::from(cli.timeout_ms))) {
        let _ = session.release();
        return Err(failure(error));
    }
    Ok(session)
}

/// Releases the session and returns `result` (a failed release fails a successful command).
fn released(
    mut session: Session,
    result: Result<Value, (Value, Failure)>,
) -> Result<Value, (Value, Failure)> {
    let release = session.release();
    let value = result?;
    release.map_err(|error| (json!({}), failure(error)))?;
    Ok(value)
}

/// `ring`.
pub fn ring(cli: &Cli, args: &RingArgs) -> Result<Value, (Value, Failure)> {
    let mut session = open(cli).map_err(|failure| (json!({}), failure))?;
    let result = match session.ring(&args.region, args.value) {
        Ok(id) => {
            let name = session
                .layout()
                .and_then(|layout| layout.region(id))
                .map(|region| region.name.as_str().to_owned())
                .unwrap_or_default();
            Ok(json!({
                "region": name,
                "region_id": id,
                "value": args.value,
                "text": format!("rang {name} ({id}) with {}\n", args.value),
            }))
        }
        Err(error) => {
            let value = match &error {
                AgentError::Protocol(SessionError::RateLimited {
                    region,
                    retry_after,
                }) => json!({
                    "region_id": region,
                    "value": args.value,
                    "retry_after_us": u64::try_from(retry_after.as_micros()).unwrap_or(u64::MAX),
                }),
                _ => json!({}),
            };
            Err((value, failure(error)))
        }
    };
    released(session, result)
}

fn doorbell_json(doorbell: &Doorbell) -> Value {
    json!({ "region_id": doorbell.region, "region": doorbell.name, "value": doorbell.value })
}

/// `wait`: until `--count` doorbells came (exit 0), the `--timeout` passed (exit 1,
/// `timed_out`) or SIGINT/SIGTERM (exit 1, `interrupted`); then releases.
pub fn wait(cli: &Cli, args: &WaitArgs) -> Result<Value, (Value, Failure)> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).map_err(|error| {
        (
            json!({}),
            Failure::setup("signals", format!("cannot handle SIGINT/SIGTERM: {error}")),
        )
    })?;
    let mut session = open(cli).map_err(|failure| (json!({}), failure))?;
    let deadline = args.timeout.map(|timeout| {
        Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(Instant::now)
    });
    let mut heard: Vec<Doorbell> = Vec::new();
    let failure = loop {
        if u64::try_from(heard.len()).unwrap_or(u64::MAX) >= args.count {
            break None;
        }
        if stop.load(Ordering::SeqCst) {
            break Some(Failure::check(
                "interrupted",
                format!("stopped after {} of {} doorbells", heard.len(), args.count),
            ));
        }
        let left = deadline.map_or(WAIT_STEP, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
        if left.is_zero() {
            break Some(Failure::check(
                "timed_out",
                format!(
                    "{} of {} doorbells came within {} ms",
                    heard.len(),
                    args.count,
                    args.timeout.map_or(0, |timeout| timeout.as_millis())
                ),
            ));
        }
        match session.wait_doorbell_on(args.region.as_deref(), left.min(WAIT_STEP)) {
            Ok(Some(doorbell)) => heard.push(doorbell),
            Ok(None) => {}
            Err(error) => break Some(failure(error)),
        }
    };
    let text: String = heard
        .iter()
        .map(|doorbell| {
            format!(
                "doorbell {} ({}): {}\n",
                doorbell.name, doorbell.region, doorbell.value
            )
        })
        .collect();
    let value = json!({
        "count": heard.len(),
        "doorbells": heard.iter().map(doorbell_json).collect::<Vec<_>>(),
        "text": text,
    });
    let result = match failure {
        None => Ok(value),
        Some(failure) => Err((value, failure)),
    };
    released(session, result)
}
