//! [`SimHost`]: a simulated Hyper-V host with one running VM, served on a thread of its own,
//! for host programs (Rust tests, C programs through `vmbmmio_sim_*`) to attach to.
//!
//! The machine is the demo's ([`crate::demo`]): the driver's real core, the real device host
//! with a version-2 session of named regions mapped into the guest's BAR, the guest's real
//! conversation on the channel (protocol 1.1) and a [`GuestProgram`] answering doorbells on
//! one region. Every consumer ([`SimHost::host`]) is a new simulated process.

use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

use vmbmmio_host::{DriverFailure, Host};

use super::driver::{SimDriver, SimLink};
use super::server::Envelope;
use super::world::SimWorld;
use crate::demo::{DemoOptions, DemoWorld, GuestProgram, LeakReport};

/// What the simulator thread is asked to do.
pub enum Message {
    /// A consumer's request.
    Driver(Envelope),
    /// Work on the machine (a test's guest action, a check).
    World(Box<dyn for<'w> FnOnce(&mut SimWorld<'w>) + Send>),
    /// Stop serving.
    Stop,
}

/// What to start.
#[derive(Clone, Debug)]
pub struct SimHostOptions {
    /// The machine (regions, names, guest kind...).
    pub demo: DemoOptions,
    /// The region whose doorbells the guest's program answers (by name), if any.
    pub answer_region: Option<String>,
}

impl Default for SimHostOptions {
    /// The demo's machine (`frames` 64 KiB rw, `bulk` 1 MiB rw, `log` 12 KiB host-ro); the
    /// guest's program answers `frames`.
    fn default() -> Self {
        Self {
            demo: DemoOptions::default(),
            answer_region: Some("frames".into()),
        }
    }
}

/// How the machine ended.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// What every model still held after the teardown (consumers included).
    pub leaks: LeakReport,
    /// Consumers still open at the stop (closed then, as by their processes' exit).
    pub consumers_left_open: usize,
    /// Frames the guest's program answered, and doorbells it rang back.
    pub frames_answered: u64,
    /// See [`Self::frames_answered`].
    pub rang_back: u64,
    /// The guest program's failure, if any.
    pub guest_error: Option<String>,
    /// The driver's locking rules broken on the simulator thread (`crate::lock_rules`).
    pub broken_rules: Vec<String>,
}

/// A running simulated host.
pub struct SimHost {
    sender: Option<Sender<Message>>,
    thread: Option<JoinHandle<Result<SimReport, String>>>,
}

impl SimHost {
    /// Builds the machine on a new thread and starts serving it.
    pub fn start(options: SimHostOptions) -> Result<Self, String> {
        let (sender, messages) = channel();
        let (ready, started) = channel();
        let thread = std::thread::Builder::new()
            .name("hvsim-host".into())
            .spawn(move || {
                let mut narration = std::io::sink();
                let demo = match DemoWorld::new(&options.demo, &mut narration) {
                    Ok(demo) => demo,
                    Err(error) => {
                        let _ = ready.send(Err(error.0.clone()));
                        return Err(error.0);
                    }
                };
                let answers = options
                    .answer_region
                    .as_deref()
                    .and_then(|name| demo.region_index(name));
                let mut world = SimWorld::new(demo, GuestProgram::answering(answers));
                let _ = ready.send(Ok(()));
                world.serve(&messages);
                finish(world)
            })
            .map_err(|error| format!("cannot start the simulator thread: {error}"))?;
        match started.recv() {
            Ok(Ok(())) => Ok(Self {
                sender: Some(sender),
                thread: Some(thread),
            }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(match thread.join() {
                Ok(Err(error)) => error,
                _ => "the simulator thread ended before the machine was built".into(),
            }),
        }
    }

    /// The way in for consumers.
    pub fn link(&self) -> Option<SimLink> {
        self.sender.clone().map(|sender| SimLink { sender })
    }

    /// A new consumer process opens the driver's control device: a host-library `Host` over
    /// it.
    pub fn host(&self) -> Result<Host, DriverFailure> {
        let link = self.link().ok_or(DriverFailure::Win32(
            super::server::ERROR_DEVICE_NOT_CONNECTED,
        ))?;
        Ok(Host::with_driver(SimDriver::open(link)?))
    }

    /// Runs `work` on the machine (on the simulator thread) and returns what it returns.
    pub fn on_world<R: Send + 'static>(
        &self,
        work: impl for<'w> FnOnce(&mut SimWorld<'w>) -> R + Send + 'static,
    ) -> Result<R, String> {
        let sender = self.sender.as_ref().ok_or("the simulator stopped")?;
        let (reply, answer) = channel();
        sender
            .send(Message::World(Box::new(move |world| {
                let _ = reply.send(work(world));
            })))
            .map_err(|_| "the simulator stopped".to_string())?;
        answer
            .recv()
            .map_err(|_| "the simulator stopped".to_string())
    }

    /// Stops serving, closes what consumers left open, tears the machine down in the
    /// documented order and reports what every model still holds.
    pub fn stop(mut self) -> Result<SimReport, String> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<SimReport, String> {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(Message::Stop);
        }
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| "the simulator thread panicked".to_string())?,
            None => Err("the simulator already stopped".into()),
        }
    }
}

impl Drop for SimHost {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

/// The end of a machine: consumers closed, teardown, leaks (consumers' objects included).
fn finish(world: SimWorld<'_>) -> Result<SimReport, String> {
    let consumers_left_open = world.consumers.open_consumers();
    let frames_answered = world.guest.frames_answered;
    let rang_back = world.guest.rang_back;
    let guest_error = world.guest.error.clone();
    let leaks = world.into_demo().teardown().map_err(|error| error.0)?;
    Ok(SimReport {
        leaks,
        consumers_left_open,
        frames_answered,
        rang_back,
        guest_error,
        broken_rules: crate::lock_rules::take_broken(),
    })
}
