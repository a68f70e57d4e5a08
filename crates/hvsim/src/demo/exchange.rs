//! The demo's host-consumer step: the machine is served on the demo's thread
//! ([`SimWorld::serve`]) while the host application ([`super::host_app`]) runs on a thread of
//! its own, as a separate process would; the guest's program answers `frames`. Their
//! narration is printed in the order it happened, once the application is done.

use std::sync::{Arc, PoisonError};

use super::DemoError;
use super::guest_program::{GuestProgram, SharedLog};
use super::host_app::{self, Exchange};
use super::world::DemoWorld;
use crate::host_sim::{SimLink, SimWorld};

/// Runs the exchange; gives the world back for the teardown.
pub(super) fn run(world: DemoWorld<'_>) -> (DemoWorld<'_>, Result<Exchange, DemoError>) {
    let log: SharedLog = Arc::default();
    let mut guest = GuestProgram::answering(world.region_index("frames"));
    guest.log = Some(log.clone());
    let mut machine = SimWorld::new(world, guest);
    let (link, messages) = SimLink::pair();
    let app_log = log.clone();
    let result = std::thread::scope(|scope| {
        let app = scope.spawn(move || host_app::run(link, &app_log));
        // Until the application dropped its last handle (every link gone).
        machine.serve(&messages);
        app.join()
    });
    let guest_error = machine.guest.error.take();
    let mut world = machine.into_demo();
    let lines = std::mem::take(&mut *log.lock().unwrap_or_else(PoisonError::into_inner));
    for line in lines {
        world.say(&line);
    }
    let attachments = world.attachment_counters();
    let objects = world.kernel().counters();
    world.say(&format!(
        "driver: attachments {} made, {} released; doorbell event references {} taken, {} \
         released; event objects {} created, {} destroyed",
        attachments.created,
        attachments.released,
        objects.event_references_taken,
        objects.event_references_released,
        objects.events_created,
        objects.events_destroyed
    ));
    let result = match (result, guest_error) {
        (_, Some(error)) => Err(DemoError(format!("guest program: {error}"))),
        (Ok(Ok(exchange)), None) => Ok(exchange),
        (Ok(Err(error)), None) => Err(DemoError(error)),
        (Err(_), None) => Err(DemoError("the host application panicked".into())),
    };
    (world, result)
}
