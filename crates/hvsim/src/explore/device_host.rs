//! One device-host process in an explored schedule: started against the VM, ticked like its
//! serve loop, and ended by an orderly stop, a failure or a crash.
//!
//! The device host is the real `vmbmmio_devhost::sequence::DeviceHost` over the simulated HCS,
//! HDV, object manager and the driver's real control device (`demo::transport`); its waiting
//! loop for guest events is played on the explorer's thread (`demo::protocol::HostWaiter`).
//! A crash runs nothing of the device host's release path ([`DeviceHost::abandon`]): the
//! process's handles and views die with it in the object manager, HDV drops what the process
//! held, and dropping its handle to the control device runs the driver's file cleanup.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use vmbmmio_core::control::serve;
use vmbmmio_core::control::{ControlError, FileKey, Opener, RequestorMode};
use vmbmmio_devhost::sequence::guest_wait::GuestEventFollower;
use vmbmmio_devhost::sequence::{Backends, DeviceHost, Event, ServeEnd};
use vmbmmio_devhost::{DriverSessionSettings, DriverTarget, ProtoDriverClient};

use super::world::Env;
use crate::alloc_faults::driver_scope;
use crate::demo::build::device_host_config;
use crate::demo::protocol::HostWaiter;
use crate::demo::transport::InProcessTransport;
use crate::demo::world::{BAR_INDEX, Host, INTERFACE_INSTANCE, INTERFACE_TYPE, VirtualClock};
use crate::hdv::{HdvSim, SimSectionMapper};
use crate::memory::ProcessId;
use crate::sections::SYSTEM_PROCESS;

/// How a tick left the device host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tick {
    /// It runs on.
    Running,
    /// Its run ended (the reason); it released what it held and its process exited.
    Ended(String),
}

/// A running device-host process.
pub(super) struct DeviceHostRun {
    pub(super) process: ProcessId,
    pub(super) file: FileKey,
    host: Option<Host>,
    waiter: Option<HostWaiter>,
    /// It took the driver's events into its placement signal but has not acted on them yet
    /// ([`DeviceHostRun::stall`]): its next tick acts before it takes newer events.
    act_first: bool,
}

impl DeviceHostRun {
    /// A new process opens the control device and starts the device host. On failure the
    /// device host has released what it acquired and the process has exited.
    pub(super) fn start(
        env: &Env,
        hdv: &HdvSim,
        process: ProcessId,
        vmbus_handle: u64,
        file: FileKey,
        region_sizes: &[u64],
    ) -> Result<Self, String> {
        env.kernel.set_current_process(process);
        let opener = Opener::admit(file, RequestorMode::UserMode, || {
            env.kernel.reference_current_process()
        });
        env.kernel.set_current_process(SYSTEM_PROCESS);
        let opener = opener.map_err(|error| format!("opening the control device: {error:?}"))?;
        let caller = opener.caller();
        let created = match env.rundown.acquire() {
            Some(in_flight) => {
                driver_scope(|| serve::file_create(&in_flight, &env.table_lock(), opener))
            }
            None => Err(ControlError::ShuttingDown),
        };
        if let Err(error) = created {
            env.kernel.exit_process(process);
            return Err(format!("opening the control device: {error:?}"));
        }
        let transport = InProcessTransport::new(
            env.control.clone(),
            env.sim.clone(),
            env.kernel.clone(),
            caller,
            process,
            env.removal.clone(),
            env.rundown.clone(),
        );
        let waiter_transport = transport.share();
        let settings = DriverSessionSettings {
            target: DriverTarget::VmbusHandle(vmbus_handle),
            interface_type: INTERFACE_TYPE,
            interface_instance: INTERFACE_INSTANCE,
            guest_writable: true,
        };
        let closer = env.kernel.clone();
        let mapper = SimSectionMapper::new(Arc::new(env.kernel.clone()), process)
            .with_handle_closer(move |process, handle| {
                let _ = closer.close_handle(process, handle);
            });
        let backends = Backends {
            hcs: hdv.clone(),
            hdv: hdv.clone(),
            driver: ProtoDriverClient::new(transport, settings),
            mapper,
        };
        let config = device_host_config(region_sizes).map_err(|error| error.0)?;
        let log = env.device_host_log.clone();
        let started = DeviceHost::start(
            &config,
            backends,
            Box::new(move |event: &Event| {
                log.borrow_mut().push(format!("device host: {event:?}"));
            }),
        );
        let host = match started {
            Ok(host) => host,
            Err(error) => {
                drop(waiter_transport);
                env.process_exits(process);
                return Err(format!("device host start failed: {error}"));
            }
        };
        let bar_size = host.layout().map_or(0, |layout| layout.bar_size());
        let follower = GuestEventFollower::new(host.placement_signal(), bar_size, BAR_INDEX)
            .with_notes(host.guest_notes());
        Ok(Self {
            process,
            file,
            host: Some(host),
            waiter: Some(HostWaiter::new(waiter_transport, follower)),
            act_first: false,
        })
    }

    /// One round of the device host's loops: every guest event the driver has for it goes
    /// into its placement signal, then one pass of its serve loop (follow the placement,
    /// check the fast path). A run that ends releases in order; a failed step has released
    /// already; either way the process exits.
    pub(super) fn tick(&mut self, env: &Env) -> Tick {
        if let Tick::Ended(why) = self.act_on_held(env) {
            return Tick::Ended(why);
        }
        self.drain();
        self.serve(env)
    }

    /// After a stall: the serve loop acts on the events taken before (nothing otherwise).
    pub(super) fn act_on_held(&mut self, env: &Env) -> Tick {
        if std::mem::take(&mut self.act_first) {
            self.serve(env)
        } else {
            Tick::Running
        }
    }

    /// The device host's two threads out of step: its guest-event loop takes the driver's
    /// events into the placement signal, but its serve loop has not acted on them when the
    /// guest does its next thing (on Windows these are two threads; either may be late).
    pub(super) fn stall(&mut self) {
        self.drain();
        self.act_first = true;
    }

    /// Whether it holds events it has not acted on yet ([`Self::stall`]).
    pub(super) fn acts_first(&self) -> bool {
        self.act_first
    }

    /// Where the device host has the regions mapped (the BAR base), if anywhere.
    pub(super) fn mapped_for(&self) -> Option<u64> {
        self.host.as_ref().and_then(Host::mapped_for)
    }

    fn drain(&mut self) {
        if let Some(waiter) = self.waiter.as_mut()
            && waiter.drain().is_err()
        {
            // The loop ends on a refused wait (docs/devhost.md); the placement then comes from
            // the configuration space only.
            self.waiter = None;
        }
    }

    fn serve(&mut self, env: &Env) -> Tick {
        let Some(host) = self.host.as_mut() else {
            return Tick::Ended("already ended".into());
        };
        let served = host.serve(
            &VirtualClock::default(),
            &AtomicBool::new(true),
            Duration::from_millis(1),
        );
        match served {
            Ok(ServeEnd::Stopped) => Tick::Running,
            Ok(end) => {
                self.quit(env);
                Tick::Ended(format!("{end:?}"))
            }
            Err(error) => {
                // `serve` released everything before it returned the error.
                self.exit(env);
                Tick::Ended(format!("failed: {error}"))
            }
        }
    }

    /// Ctrl-C: the release path in order, then the process exits.
    pub(super) fn quit(&mut self, env: &Env) {
        self.waiter = None;
        if let Some(host) = self.host.take() {
            let _ = host.shutdown();
        }
        self.exit(env);
    }

    /// The process dies: nothing of the device host runs.
    pub(super) fn crash(&mut self, env: &Env) {
        // Its threads die first (the I/O manager cancels their pending requests), then its
        // handles and views go, then its handle to the control device closes.
        self.waiter = None;
        env.process_exits(self.process);
        if let Some(host) = self.host.take() {
            host.abandon();
        }
    }

    fn exit(&mut self, env: &Env) {
        self.waiter = None;
        if let Some(host) = self.host.take() {
            host.abandon();
        }
        env.process_exits(self.process);
    }
}
