//! Where the wrapper finds the KMCL table.
//!
//! KMCL callbacks carry no context argument besides the `VMBCHANNEL`, and the wrapper's
//! `extern "system"` trampolines must call back into KMCL (`VmbChannelGetPointer`,
//! `VmbChannelPacketComplete`). So the table is reached through a *type*: every trampoline is
//! generic over a [`KmclProvider`], and the provider's [`KmclProvider::api`] returns a `'static`
//! table. No global mutable state, no initialisation order to get wrong.
//!
//! Providers:
//! - Windows: `crate::Vmbkmclr`, the table DriverEntry resolved from the loaded `vmbkmclr.sys`
//!   and installed once (`crate::installed`);
//! - tests and the demo: `hvsim::kmcl::HvsimKmcl`, the simulator's model.

use crate::KmclApi;

/// Something the wrapper allocated or freed for one channel, reported to the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextEvent {
    /// A channel context (handler, callback table, friendly name) was allocated.
    Allocated,
    /// That context was freed, after `VmbChannelCleanup`.
    Freed,
}

/// A source of the KMCL function table, chosen at compile time.
pub trait KmclProvider: 'static {
    /// The table. IRQL: any (it only returns a reference).
    fn api() -> &'static KmclApi;

    /// Told about every context allocation and release, so a simulator can count them
    /// (tests prove that no failure path leaks a context). The default does nothing.
    /// IRQL: PASSIVE_LEVEL (the wrapper allocates and frees contexts only there).
    fn context_event(_event: ContextEvent) {}
}
