//! [`UioDoorbell`]: signalling the host and waiting for it on the `/dev/uioN` file.
//!
//! `uio_write` hands a 4-byte value to the driver's `irqcontrol`; `uio_hv_generic`'s unmasks
//! the channel's interrupt for a non-zero value and signals the host (`hv_uio_irqcontrol`).
//! `uio_poll` reports `POLLIN` once the interrupt count moved, and `uio_read` returns that
//! count as 4 bytes (Linux `drivers/uio/uio.c`, `drivers/uio/uio_hv_generic.c`). Neither
//! `uio_write` nor `uio_read` looks at the file position.
//!
//! # A regular file stands in for the device in tests
//! The file is opened with `O_APPEND`, which changes nothing on the character device (its
//! `write` ignores the position) but makes the doorbell harmless on a regular file standing in
//! for `/dev/uioN` (the end-to-end tests map its first bytes as the rings): every 4-byte
//! `irqcontrol` value lands after the maps, so the rings are never overwritten and a test
//! counts the signals from the file's growth. An append also leaves the file position at the
//! end, so the `read` that follows a `poll` (a regular file is always readable) returns 0
//! bytes: end of file, which a uio device never returns. [`UioDoorbell::wait`] takes that as
//! "no count available" and sleeps a short slice instead, so a caller waiting in a loop does
//! not spin.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::LinuxError;
use crate::channel::ChannelError;
use crate::ring_channel::Doorbell;

/// How long [`UioDoorbell::wait`] sleeps when the file gives no count (a regular file).
const NO_COUNT_SLICE_MS: u32 = 5;

/// The uio file, as the channel's doorbell.
#[derive(Debug)]
pub struct UioDoorbell {
    file: File,
    path: PathBuf,
    /// The last interrupt count read.
    events: u32,
}

impl UioDoorbell {
    /// Opens `dev_node` (`/dev/uioN`) read/write, in append mode (see the module doc).
    pub fn open(dev_node: &Path) -> Result<Self, LinuxError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_APPEND)
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
            match self.file.read(&mut count) {
                Ok(4) => self.events = u32::from_ne_bytes(count),
                // End of file (or a short read): a regular file standing in for the device
                // has no count. Sleep a slice so the caller's loop does not spin.
                Ok(_) => std::thread::sleep(Duration::from_millis(u64::from(
                    timeout_ms.min(NO_COUNT_SLICE_MS),
                ))),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(self.io("reading the event count from", error)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    /// A regular file of `len` bytes `0xa5`, standing in for `/dev/uioN`.
    fn fake_node(len: usize) -> PathBuf {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "vmbmmio-doorbell-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, vec![0xa5u8; len]).unwrap();
        path
    }

    #[test]
    fn on_a_regular_file_signals_append_and_wait_returns() {
        let path = fake_node(8192);
        let mut bell = UioDoorbell::open(&path).unwrap();
        bell.ring().unwrap();
        bell.ring().unwrap();
        // The rings' bytes are untouched; each signal is 4 bytes after them.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 8192 + 8);
        assert!(bytes.get(..8192).unwrap().iter().all(|&b| b == 0xa5));
        let one = 1u32.to_ne_bytes();
        assert_eq!(bytes.get(8192..8196).unwrap(), one);
        assert_eq!(bytes.get(8196..).unwrap(), one);

        // `wait` re-enables (one more signal), finds no count and sleeps a short slice.
        let started = Instant::now();
        bell.wait(1000).unwrap();
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(bell.events(), 0);
        bell.wait(0).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 8192 + 4 * 4);
        assert!(bytes.get(..8192).unwrap().iter().all(|&b| b == 0xa5));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_missing_node_is_an_open_error() {
        let path = std::env::temp_dir().join("vmbmmio-doorbell-no-such-node");
        assert!(matches!(
            UioDoorbell::open(&path),
            Err(LinuxError::Io { .. })
        ));
    }
}
