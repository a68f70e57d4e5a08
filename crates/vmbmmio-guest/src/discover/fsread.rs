//! Reading a sysfs tree without trusting it: every read is bounded, every directory listing is
//! bounded, and every failure names the file.
//!
//! A real sysfs attribute is at most one page of text (`Documentation/filesystems/sysfs.rst`:
//! "the buffer will always be PAGE_SIZE bytes"), and PCI `config` is at most 4096 bytes (PCI
//! Express extended configuration space). A file larger than the caller's bound is an error rather
//! than a truncated read, so a replaced or corrupted file cannot make the agent parse half of it.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::error::{DiscoverError, IoOp};
use super::text::quote;

/// Largest text attribute read (one 4 KiB page, the sysfs `show` buffer).
pub const MAX_TEXT: usize = 4096;
/// Largest directory listing walked (VMBus devices, PCI functions, uio nodes).
pub const MAX_DIR_ENTRIES: usize = 4096;

/// Reads at most `limit` bytes of `path`; a longer file is [`DiscoverError::TooLarge`].
pub fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, DiscoverError> {
    let file =
        fs::File::open(path).map_err(|source| DiscoverError::io(IoOp::Read, path, source))?;
    let mut bytes = Vec::new();
    let take = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(take)
        .read_to_end(&mut bytes)
        .map_err(|source| DiscoverError::io(IoOp::Read, path, source))?;
    if bytes.len() > limit {
        return Err(DiscoverError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(bytes)
}

/// Reads a one-value text attribute: at most [`MAX_TEXT`] bytes of UTF-8, with one trailing
/// newline removed (sysfs `show` functions end their value with `\n`; `echo -n` style files
/// written by tests may not).
pub fn read_text(path: &Path) -> Result<String, DiscoverError> {
    let bytes = read_bounded(path, MAX_TEXT)?;
    let text = String::from_utf8(bytes).map_err(|error| DiscoverError::Parse {
        path: path.to_path_buf(),
        expected: "UTF-8 text",
        found: quote(&String::from_utf8_lossy(error.as_bytes())),
    })?;
    Ok(match text.strip_suffix('\n') {
        Some(stripped) => stripped.to_owned(),
        None => text,
    })
}

/// Reads a text attribute and parses it with `parse`; a value `parse` rejects is
/// [`DiscoverError::Parse`] naming `path` and quoting (a bounded prefix of) the value.
pub fn read_parsed<T>(
    path: &Path,
    expected: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, DiscoverError> {
    let text = read_text(path)?;
    parse(&text).ok_or_else(|| DiscoverError::Parse {
        path: path.to_path_buf(),
        expected,
        found: quote(&text),
    })
}

/// The names of `dir`'s entries, sorted, at most [`MAX_DIR_ENTRIES`] of them. Names that are not
/// UTF-8 are skipped (the kernel names the directories this module walks in ASCII).
pub fn list_dir(dir: &Path) -> Result<Vec<String>, DiscoverError> {
    let entries = fs::read_dir(dir).map_err(|source| DiscoverError::io(IoOp::List, dir, source))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DiscoverError::io(IoOp::List, dir, source))?;
        if names.len() >= MAX_DIR_ENTRIES {
            return Err(DiscoverError::TooManyEntries {
                path: dir.to_path_buf(),
                limit: MAX_DIR_ENTRIES,
            });
        }
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The last component of the symbolic link at `path` (a `driver` link names its driver this
/// way), `None` if there is no link. Anything at `path` that is not a symbolic link, or a link
/// whose target has no UTF-8 last component, is an error.
pub fn link_name(path: &Path) -> Result<Option<String>, DiscoverError> {
    match fs::read_link(path) {
        Ok(target) => target
            .file_name()
            .and_then(|name| name.to_str())
            .map(|name| Some(name.to_owned()))
            .ok_or_else(|| DiscoverError::Parse {
                path: path.to_path_buf(),
                expected: "a symbolic link to a driver directory",
                found: quote(&target.to_string_lossy()),
            }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DiscoverError::io(IoOp::ReadLink, path, source)),
    }
}

/// Whether `error` says the file vanished (a device removed while it was being read: sysfs
/// answers `ENOENT` or, for an attribute of a VMBus device whose channel is gone, `ENODEV`).
pub fn vanished(error: &io::Error) -> bool {
    const ENODEV: i32 = 19;
    error.kind() == io::ErrorKind::NotFound || error.raw_os_error() == Some(ENODEV)
}

/// `base` joined with each of `parts`.
pub fn join(base: &Path, parts: &[&str]) -> PathBuf {
    let mut path = base.to_path_buf();
    for part in parts {
        path.push(part);
    }
    path
}
