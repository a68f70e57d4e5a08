//! The device host's [`MappingState`] against the wire's state + HRESULT pair (REPORT_MAPPING).
//!
//! The device host keeps the HRESULT inside the states that have one; the wire carries a state
//! and an HRESULT side by side, with `SUCCEEDED` required for `SectionBacked` and `FAILED` for
//! `Failed` (docs/ioctl.md). `Unmapped` and `SectionBacked` go out with `S_OK`.

use vmbmmio_proto::ioctl::MappingState as WireMappingState;

use crate::driver::MappingState;
use crate::hresult::HResult;

/// The wire state and HRESULT that report `state`.
pub const fn mapping_to_wire(state: MappingState) -> (WireMappingState, HResult) {
    match state {
        MappingState::Unmapped => (WireMappingState::Unmapped, HResult::S_OK),
        MappingState::SectionBacked => (WireMappingState::SectionBacked, HResult::S_OK),
        MappingState::InterceptFallback { hresult } => {
            (WireMappingState::InterceptFallback, hresult)
        }
        MappingState::Failed { hresult } => (WireMappingState::Failed, hresult),
    }
}

/// The device host's state for a wire state and HRESULT (the HRESULT of `Unmapped` and
/// `SectionBacked` carries no information and is dropped).
pub const fn mapping_from_wire(state: WireMappingState, hresult: HResult) -> MappingState {
    match state {
        WireMappingState::Unmapped => MappingState::Unmapped,
        WireMappingState::SectionBacked => MappingState::SectionBacked,
        WireMappingState::InterceptFallback => MappingState::InterceptFallback { hresult },
        WireMappingState::Failed => MappingState::Failed { hresult },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_maps_both_ways() {
        let refused = HResult::INVALID_STATE;
        let cases = [
            (
                MappingState::Unmapped,
                WireMappingState::Unmapped,
                HResult::S_OK,
            ),
            (
                MappingState::SectionBacked,
                WireMappingState::SectionBacked,
                HResult::S_OK,
            ),
            (
                MappingState::InterceptFallback { hresult: refused },
                WireMappingState::InterceptFallback,
                refused,
            ),
            (
                MappingState::InterceptFallback {
                    hresult: HResult::S_OK,
                },
                WireMappingState::InterceptFallback,
                HResult::S_OK,
            ),
            (
                MappingState::Failed { hresult: refused },
                WireMappingState::Failed,
                refused,
            ),
        ];
        for (state, wire, hresult) in cases {
            assert_eq!(mapping_to_wire(state), (wire, hresult), "{state:?}");
            assert_eq!(mapping_from_wire(wire, hresult), state, "{state:?}");
        }
        // The HRESULT of the states without one is not kept.
        assert_eq!(
            mapping_from_wire(WireMappingState::Unmapped, HResult::E_FAIL),
            MappingState::Unmapped
        );
        assert_eq!(
            mapping_from_wire(WireMappingState::SectionBacked, HResult::from_bits(1)),
            MappingState::SectionBacked
        );
    }
}
