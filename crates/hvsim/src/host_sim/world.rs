//! [`SimWorld`]: the simulated machine a host consumer talks to, and the loop that serves it
//! on the thread that owns it (the KMCL model is per thread, so the whole machine lives on
//! one thread; consumers reach it through messages from any thread).

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use super::running::Message;
use super::server::ConsumerServer;
use crate::demo::{DemoWorld, GuestProgram};

/// How long the loop waits for a message before it lets the guest's program look again.
pub const TICK: Duration = Duration::from_millis(1);

/// The demo's host and guest (driver, device host with a version-2 session, HDV, the guest
/// with its channel and BAR), the host consumers' processes, and the guest's program.
pub struct SimWorld<'w> {
    /// The host and the guest.
    pub demo: DemoWorld<'w>,
    /// The consumer processes.
    pub consumers: ConsumerServer,
    /// The guest's program (answers doorbells).
    pub guest: GuestProgram,
}

impl<'w> SimWorld<'w> {
    /// Consumers and `guest` around `demo`.
    pub fn new(demo: DemoWorld<'w>, guest: GuestProgram) -> Self {
        let consumers = ConsumerServer::new(demo.glue());
        Self {
            demo,
            consumers,
            guest,
        }
    }

    /// Serves messages until [`Message::Stop`] or until every sender is gone; after each
    /// message, and at least every [`TICK`], the guest's program handles what the driver has
    /// for it.
    pub fn serve(&mut self, messages: &Receiver<Message>) {
        loop {
            match messages.recv_timeout(TICK) {
                Ok(Message::Driver(envelope)) => self.consumers.serve(envelope),
                Ok(Message::World(work)) => work(self),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.guest.step(&mut self.demo);
        }
    }

    /// Closes the consumers still open (their handles close, their processes exit) and gives
    /// the demo's world back, for its teardown.
    pub fn into_demo(mut self) -> DemoWorld<'w> {
        self.consumers.close_all();
        self.demo
    }
}
