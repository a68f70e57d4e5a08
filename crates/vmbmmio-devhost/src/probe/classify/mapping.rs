//! The section-backed mapping check's verdict.
//!
//! Rules, in order:
//! 1. The device host did not start, or waiting/mapping failed: `error`.
//! 2. The run ended before a mapping (stopped, the VM went away): `inconclusive`.
//! 3. HDV refused the range (`InterceptFallback` with a failure HRESULT, or `Failed`):
//!    `answered_no`, the HRESULT is the evidence.
//! 4. The range was created, and guest accesses of the region reached the emulator (the
//!    intercept counter grew): `answered_no`: the range is not in effect.
//! 5. The range was created, no intercept, and the section's bytes changed: `answered_yes`: a
//!    guest write went through the range into the section.
//! 6. The range was created, no intercept, no change: `inconclusive`: no guest access was
//!    seen (a read through an effective range leaves no trace on the host).

use super::Outcome;
use crate::driver::MappingState;
use crate::probe::mapping::{MappedFacts, MappingFacts, MappingRun};
use crate::probe::report::{Evidence, Value, Verdict};
use crate::probe::vdev::hex;

fn state_evidence(state: MappingState) -> Evidence {
    match state {
        MappingState::Unmapped => Evidence::new().with("state", "unmapped"),
        MappingState::SectionBacked => Evidence::new().with("state", "section_backed"),
        MappingState::InterceptFallback { hresult } => Evidence::new()
            .with("state", "intercept_fallback")
            .with("hresult", format!("{:#010x}", hresult.bits())),
        MappingState::Failed { hresult } => Evidence::new()
            .with("state", "failed")
            .with("hresult", format!("{:#010x}", hresult.bits())),
    }
}

fn mapped_evidence(facts: &MappedFacts) -> Evidence {
    let counts = |counts: &crate::probe::mapping::AccessCounts| -> Value {
        Evidence::new()
            .with("region_intercepts", counts.region)
            .with("bar_reads", counts.bar_reads)
            .with("bar_writes", counts.bar_writes)
            .into()
    };
    let mut evidence = Evidence::new()
        .with("region", facts.region)
        .with("bar", u32::from(facts.bar))
        .with("bar_base", facts.bar_base.map(|base| format!("{base:#x}")))
        .with(
            "region_offset",
            facts.region_offset.map(|offset| format!("{offset:#x}")),
        )
        .with("mapping", state_evidence(facts.state))
        .with("pattern_hex", hex(&facts.pattern));
    match &facts.pattern_write {
        Ok(()) => evidence.set("pattern_written", true),
        Err(error) => evidence.set("pattern_write_error", error.as_str()),
    }
    evidence.set("intercepts_before", counts(&facts.before));
    evidence.set("intercepts_after", counts(&facts.after));
    match &facts.head_after {
        Ok(head) => {
            evidence.set("section_head_after_hex", hex(head));
            evidence.set("pattern_intact", *head == facts.pattern);
        }
        Err(error) => evidence.set("section_head_after_error", error.as_str()),
    }
    evidence
        .with("waited_ms", facts.waited_ms)
        .with("bound_ms", facts.bound_ms)
        .with("wait_end", facts.wait_end.as_str())
}

fn classify_mapped(facts: &MappedFacts, evidence: Evidence) -> Outcome {
    let base = facts
        .bar_base
        .map_or_else(|| "?".to_string(), |base| format!("{base:#x}"));
    let refused = match facts.state {
        MappingState::Failed { hresult } => Some(hresult),
        MappingState::InterceptFallback { hresult } if !hresult.is_success() => Some(hresult),
        _ => None,
    };
    if let Some(hresult) = refused {
        return Outcome::new(
            Verdict::AnsweredNo,
            format!(
                "HdvCreateSectionBackedMmioRange refused the range (after decode was on, BAR at \
                 {base}) with {:#010x}",
                hresult.bits()
            ),
            evidence,
        );
    }
    if facts.state == MappingState::Unmapped {
        return Outcome::new(
            Verdict::Inconclusive,
            "the region's mapping state was never decided",
            evidence,
        );
    }
    if facts.pattern_write.is_err() {
        return Outcome::new(
            Verdict::Error,
            "the pattern could not be written through the device host's view",
            evidence,
        );
    }
    let intercepts = facts.after.region.saturating_sub(facts.before.region);
    let changed = facts
        .head_after
        .as_ref()
        .is_ok_and(|head| *head != facts.pattern);
    if intercepts > 0 {
        Outcome::new(
            Verdict::AnsweredNo,
            format!(
                "the range was created (BAR at {base}) but {intercepts} guest accesses of the \
                 region reached the emulator: it is not in effect"
            ),
            evidence,
        )
    } else if changed {
        Outcome::new(
            Verdict::AnsweredYes,
            format!(
                "the range was created (BAR at {base}) and a guest write changed the section \
                 with no intercepted access: it is in effect"
            ),
            evidence,
        )
    } else {
        Outcome::new(
            Verdict::Inconclusive,
            format!(
                "the range was created (BAR at {base}) but no guest access was seen in {} ms \
                 (a read through an effective range leaves no trace here: write from the \
                 guest, or report what it read)",
                facts.waited_ms
            ),
            evidence,
        )
    }
}

/// `section_backed_mapping`.
pub fn section_backed_mapping(facts: &MappingFacts) -> Outcome {
    let mut evidence = Evidence::new()
        .with("config", facts.config_path.as_str())
        .with("vm_id", facts.vm_id.to_string());
    let outcome = match &facts.run {
        MappingRun::StartFailed(error) => {
            evidence.set("start_error", error.as_str());
            Outcome::new(
                Verdict::Error,
                format!("the device host did not start: {error}"),
                Evidence::new(),
            )
        }
        MappingRun::MapFailed(error) => {
            evidence.set("map_error", error.as_str());
            Outcome::new(
                Verdict::Error,
                format!("waiting for the guest or mapping failed: {error}"),
                Evidence::new(),
            )
        }
        MappingRun::NotMapped(progress) => {
            evidence.set("progress", progress.as_str());
            Outcome::new(
                Verdict::Inconclusive,
                format!("the run ended before a region was mapped ({progress})"),
                Evidence::new(),
            )
        }
        MappingRun::Mapped(mapped) => {
            let outcome = classify_mapped(mapped, Evidence::new());
            for (key, value) in mapped_evidence(mapped).entries() {
                evidence.set(key, value.clone());
            }
            outcome
        }
    };
    evidence.set("teardown", facts.teardown.clone());
    evidence.set("device_host_events", facts.events.clone());
    Outcome {
        evidence,
        ..outcome
    }
}
