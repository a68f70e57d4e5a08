//! [`UioDoorbell`]: signalling the host and waiting for it on the `/dev/uioN` file.
//!
//! `uio_write` hands a 4-byte value to the driver's `irqcontrol`; `uio_hv_generic`'s unmasks
//! the channel's interrupt for a non-zero value and signals the host (`hv_uio_irqcontrol`).
//! `uio_poll` reports `POLLIN` once the interrupt count moved, and `uio_read` returns that
//! count as 4 bytes (Linux `drivers/uio/uio.c`, `drivers/uio/uio_hv_generic.c`).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::LinuxError;
use crate::channel::ChannelError;
use crate::ring_channel::Doorbell;

/// The uio file, as the channel's doorbell.
#[derive(Debug)]
pub struct UioDoorbell {
    file: File,
    path: PathBuf,
    /// The last interrupt count read.
    events: u32,
}

impl UioDoorbell {
    /// Opens `dev_node` (`/dev/uioN`) read/write.
    pub fn open(dev_node: &Path) -> Result<Self, LinuxError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dev_node)
            .map_err(|source| LinuxError::io("opening", dev_node, source))?;
        Ok(Self {
            file,
            path: dev_node.to_path_buf(),
            events: 0,
        })
    }

    /// The last interrupt count the kernel reported.
    pub fn events(&self) -> u32 {
        self.events
    }

    fn io(&self, what: &str, error: std::io::Error) -> ChannelError {
        ChannelError::Io(format!("{what} {}: {error}", self.path.display()))
    }

    fn irqcontrol(&mut self) -> Result<(), ChannelError> {
        self.file
            .write_all(&1u32.to_ne_bytes())
            .map_err(|error| self.io("writing irqcontrol to", error))
    }
}

impl Doorbell for UioDoorbell {
    fn ring(&mut self) -> Result<(), ChannelError> {
        self.irqcontrol()
    }

    fn wait(&mut self, timeout_ms: u32) -> Result<(), ChannelError> {
        // Re-enable the interrupt first, so a signal after our last look is not lost.
        self.irqcontrol()?;
        let mut poll = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = i32::try_from(timeout_ms).unwrap_or(i32::MAX);
        // SAFETY: `poll` gets one valid `pollfd` (count 1) that lives across the call; the
        // descriptor is the open uio file owned by `self`.
        let ready = unsafe { libc::poll(&raw mut poll, 1, timeout) };
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == ErrorKind::Interrupted {
                // A signal (SIGINT for `serve`): the caller looks at the rings and decides.
                return Ok(());
            }
            return Err(self.io("polling", error));
        }
        if ready > 0 && poll.revents & libc::POLLIN != 0 {
            let mut count = [0u8; 4];
            match self.file.read_exact(&mut count) {
                Ok(()) => self.events = u32::from_ne_bytes(count),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(self.io("reading the event count from", error)),
            }
        }
        Ok(())
    }
}
