//! QUERY_DRIVER: what the whole driver runs with, for the device host's start-up log.
//!
//! The driver resolves its KMCL entry points at load time; a missing *optional* one leaves a
//! working driver, and this request is how it says so (issue 8; docs/ioctl.md). The answer is
//! read from the platform's KMCL table itself ([`kmcl::KmclApi::missing_optional`]), so it is
//! exactly the set the channel code runs without, and from the file table.
//!
//! Like QUERY_STATUS, the request needs a file handle but no session, and it is admitted the same
//! way (the opener's process, user mode, an entry not being opened or closed: `begin_checked`).
//! It changes nothing.

use kmcl::{KmclFunction, KmclProvider};
use vmbmmio_proto::ioctl::{DriverFacts, parse_query_driver};

use super::{ControlDevice, ControlError, Platform};

impl<X: Platform> ControlDevice<X> {
    /// The facts QUERY_DRIVER reports: the width of the KMCL table, the optional entries it
    /// lacks (bit `i` = `KmclFunction::ALL[i]`), open file handles and established sessions.
    ///
    /// IRQL: <= DISPATCH_LEVEL (no kernel call); callers hold the table lock.
    pub fn driver_facts(&self) -> Result<DriverFacts, ControlError> {
        let missing = <X::Kmcl as KmclProvider>::api().missing_optional();
        // The table has 27 entries and at most MAX_OPEN_FILES files exist: these never saturate,
        // and if they did, `DriverFacts::new` would refuse a table wider than its bit set.
        let entries = u32::try_from(KmclFunction::ALL.len()).unwrap_or(u32::MAX);
        let open_files = u32::try_from(self.open_files()).unwrap_or(u32::MAX);
        let live_sessions = u32::try_from(self.live_sessions()).unwrap_or(u32::MAX);
        Ok(DriverFacts::new(
            entries,
            missing.bits(),
            open_files,
            live_sessions,
        )?)
    }

    /// QUERY_DRIVER, under the table lock: the request's framing, then the reply.
    ///
    /// IRQL: PASSIVE_LEVEL (callers hold the table lock).
    pub(super) fn query_driver(
        &self,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, ControlError> {
        parse_query_driver(input)?;
        Ok(self.driver_facts()?.encode(output)?)
    }
}
