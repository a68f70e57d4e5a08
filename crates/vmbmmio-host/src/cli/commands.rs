//! The commands: `list`, `map`, `read`, `write`, `verify`, `wait`, `ring`.

use std::time::Duration;

use serde_json::{Value, json};
use vmbmmio_host::{Access, Attachment, Error, Host, RegionView, VmId, VmSession};

use super::args::{Cli, MapArgs, ReadArgs, RingArgs, VerifyArgs, WaitArgs, WriteArgs};
use super::failure::{Failure, failure};
use vmbmmio_cli_support::bytes::{hex, hex_dump, pattern_byte, write_unit};
use vmbmmio_cli_support::output::Outcome;

/// The most bytes `read` prints.
const MAX_READ: u64 = 16 << 20;

fn fail(failure: Failure) -> (Value, Failure) {
    (json!({}), failure)
}

fn lib(error: Error) -> (Value, Failure) {
    fail(failure(error))
}

fn session_json(session: &VmSession) -> Value {
    let regions: Vec<Value> = session
        .regions
        .iter()
        .map(|region| {
            json!({
                "index": region.index,
                "name": region.name,
                "size": region.size,
                "guest_writable": region.guest_writable,
                "consumer_access": region.max_access().as_str(),
                "state": region.state.as_str(),
            })
        })
        .collect();
    json!({
        "vm_id": session.vm_id.to_string(),
        "session_id": session.session_id,
        "regions": regions,
    })
}

/// `list`.
pub fn list(host: &Host) -> Outcome {
    let sessions = host.list().map_err(lib)?;
    let mut text = String::new();
    if sessions.is_empty() {
        text.push_str("no VM has a vmbmmio session with named regions\n");
    }
    for session in &sessions {
        text.push_str(&format!(
            "VM {} (session {})\n",
            session.vm_id, session.session_id
        ));
        for region in &session.regions {
            text.push_str(&format!(
                "  {:<32} {:>10} bytes  guest {}  consumers {}  {}\n",
                region.name,
                region.size,
                if region.guest_writable { "rw" } else { "ro" },
                region.max_access().as_str(),
                region.state.as_str()
            ));
        }
    }
    let sessions: Vec<Value> = sessions.iter().map(session_json).collect();
    Ok(json!({ "sessions": sessions, "text": text }))
}

/// The VM to attach to for `region`: `--vm`, or the one listed VM with a region of that name.
fn vm_for(cli: &Cli, host: &Host, region: &str) -> Result<VmId, Failure> {
    if let Some(text) = &cli.vm {
        return text
            .parse::<VmId>()
            .map_err(|error| Failure::setup("usage", error.to_string()));
    }
    let sessions = host.list().map_err(failure)?;
    let mut owners = sessions
        .iter()
        .filter(|session| session.regions.iter().any(|r| r.name == region))
        .map(|session| session.vm_id);
    match (owners.next(), owners.next()) {
        (Some(vm), None) => Ok(vm),
        (None, _) => Err(Failure::setup(
            "region_not_found",
            format!("no VM has a region named `{region}` (see `vmbmmio-host list`)"),
        )),
        (Some(_), Some(_)) => Err(Failure::setup(
            "several_vms",
            format!("several VMs have a region named `{region}`: give --vm <id>"),
        )),
    }
}

/// Attaches to `region` with `access`, maps it, runs `work`, then detaches.
fn with_view(
    cli: &Cli,
    host: &Host,
    region: &str,
    access: Access,
    work: impl FnOnce(&Attachment, &RegionView) -> Outcome,
) -> Outcome {
    let vm = vm_for(cli, host, region).map_err(fail)?;
    let attachment = host.attach(vm, region, access).map_err(lib)?;
    let view = attachment.map().map_err(lib)?;
    let mut value = work(&attachment, &view)?;
    drop(view);
    attachment.detach().map_err(lib)?;
    if let Some(object) = value.as_object_mut() {
        object.insert("vm_id".into(), json!(vm.to_string()));
        object.insert("region".into(), json!(region));
    }
    Ok(value)
}

/// `offset..offset + length` inside the region, as a length in memory.
fn check_range(view: &RegionView, offset: u64, length: u64) -> Result<usize, Failure> {
    let inside = offset
        .checked_add(length)
        .is_some_and(|end| end <= view.len());
    if !inside {
        return Err(failure(Error::OutOfBounds {
            offset,
            len: length,
            size: view.len(),
        }));
    }
    usize::try_from(length).map_err(|_| Failure::setup("out_of_bounds", "too long"))
}

/// `map`.
pub fn map(cli: &Cli, host: &Host, args: &MapArgs) -> Outcome {
    let access = if args.write {
        Access::ReadWrite
    } else {
        Access::Read
    };
    with_view(cli, host, &args.region, access, |attachment, view| {
        Ok(json!({
            "attachment": attachment.id(),
            "size": attachment.size(),
            "access": attachment.access().as_str(),
            "region_index": attachment.region_index(),
            "section_handle": attachment.section_handle(),
            "text": format!(
                "attached {} ({} bytes, {}, region {}) as attachment {}; mapped at {:p}\n",
                args.region,
                attachment.size(),
                attachment.access().as_str(),
                attachment.region_index(),
                attachment.id(),
                view.as_ptr()
            ),
        }))
    })
}

/// `read`.
pub fn read(cli: &Cli, host: &Host, args: &ReadArgs) -> Outcome {
    if args.length > MAX_READ {
        return Err(fail(Failure::setup(
            "usage",
            format!("--length is at most {MAX_READ} bytes"),
        )));
    }
    with_view(cli, host, &args.region, Access::Read, |_, view| {
        let length = check_range(view, args.offset, args.length).map_err(fail)?;
        let mut bytes = vec![0u8; length];
        view.read(args.offset, &mut bytes).map_err(lib)?;
        Ok(json!({
            "offset": args.offset,
            "length": args.length,
            "hex": hex(&bytes),
            "text": hex_dump(args.offset, &bytes),
        }))
    })
}

/// `write`.
pub fn write(cli: &Cli, host: &Host, args: &WriteArgs) -> Outcome {
    let (unit, length) = write_unit(args.pattern.as_ref(), args.byte, args.length).map_err(fail)?;
    with_view(cli, host, &args.region, Access::ReadWrite, |_, view| {
        let count = check_range(view, args.offset, length).map_err(fail)?;
        let data: Vec<u8> = unit.iter().copied().cycle().take(count).collect();
        view.write(args.offset, &data).map_err(lib)?;
        Ok(json!({
            "offset": args.offset,
            "length": length,
            "text": format!("wrote {length} bytes at {:#x} in {}\n", args.offset, args.region),
        }))
    })
}

/// `verify`.
pub fn verify(cli: &Cli, host: &Host, args: &VerifyArgs) -> Outcome {
    let seed = u8::try_from(std::process::id() & 0xFF).unwrap_or(0x5A);
    with_view(cli, host, &args.region, Access::ReadWrite, |_, view| {
        let length = args.length.unwrap_or(view.len());
        let count = check_range(view, 0, length).map_err(fail)?;
        let pattern: Vec<u8> = (0..count)
            .map(|offset| pattern_byte(offset, seed))
            .collect();
        view.write(0, &pattern).map_err(lib)?;
        let mut back = vec![0u8; count];
        view.read(0, &mut back).map_err(lib)?;
        let mismatches = pattern.iter().zip(&back).filter(|(a, b)| a != b).count();
        let first = pattern.iter().zip(&back).position(|(a, b)| a != b);
        let out = json!({
            "length": length,
            "mismatches": mismatches,
            "first_mismatch": first,
            "text": format!("verified {length} bytes of {}: {mismatches} mismatches\n", args.region),
        });
        if mismatches == 0 {
            Ok(out)
        } else {
            Err((
                out,
                Failure::check(
                    "mismatch",
                    format!(
                        "{mismatches} of {length} bytes read back differently (first at offset {})",
                        first.unwrap_or(0)
                    ),
                ),
            ))
        }
    })
}

/// `wait`.
pub fn wait(cli: &Cli, host: &Host, args: &WaitArgs) -> Outcome {
    let vm = vm_for(cli, host, &args.region).map_err(fail)?;
    let attachment = host.attach(vm, &args.region, Access::Read).map_err(lib)?;
    let timeout = Duration::from_millis(u64::from(args.timeout_ms));
    let waited = attachment.wait_doorbell(Some(timeout)).map_err(lib)?;
    attachment.detach().map_err(lib)?;
    let base = json!({ "vm_id": vm.to_string(), "region": args.region });
    match waited {
        Some(bells) => {
            let mut out = base;
            if let Some(object) = out.as_object_mut() {
                object.insert("count".into(), json!(bells.count));
                object.insert("last_value".into(), json!(bells.last_value));
                object.insert("refused_from_guest".into(), json!(bells.refused_from_guest));
                object.insert("refused_to_guest".into(), json!(bells.refused_to_guest));
                object.insert(
                    "text".into(),
                    json!(format!(
                        "doorbell on {}: count {}, last value {:#x}\n",
                        args.region, bells.count, bells.last_value
                    )),
                );
            }
            Ok(out)
        }
        None => Err((
            base,
            Failure::check(
                "timeout",
                format!(
                    "no doorbell from the guest on `{}` within {} ms",
                    args.region, args.timeout_ms
                ),
            ),
        )),
    }
}

/// `ring`.
pub fn ring(cli: &Cli, host: &Host, args: &RingArgs) -> Outcome {
    let vm = vm_for(cli, host, &args.region).map_err(fail)?;
    let attachment = host.attach(vm, &args.region, Access::Read).map_err(lib)?;
    attachment.ring(args.value).map_err(lib)?;
    attachment.detach().map_err(lib)?;
    Ok(json!({
        "vm_id": vm.to_string(),
        "region": args.region,
        "value": args.value,
        "text": format!("rang {} with {:#x}\n", args.region, args.value),
    }))
}
