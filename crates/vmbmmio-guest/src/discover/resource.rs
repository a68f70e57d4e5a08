//! A PCI function's `resource` file: one line per resource, `0x%016llx 0x%016llx 0x%016llx\n`
//! (start, end, flags; Linux `drivers/pci/pci-sysfs.c`, `resource_show`), lines 0 to 5 being the
//! BARs (`Documentation/PCI/sysfs-pci.rst`: "resource — PCI resource host addresses"). The flags
//! are the kernel's `IORESOURCE_*` bits (Linux `include/linux/ioport.h`).
//!
//! vmbmmio's BAR is 64-bit prefetchable memory, naturally aligned, a power of two of at least
//! 4 KiB (`docs/protocol.md`, `REPORT_DEVICE`): anything else in the line is refused with the
//! first [`BarProblem`] found, in the order of that enum.

use super::error::BarProblem;
use super::text::parse_hex_u64;

/// `IORESOURCE_MEM`: a memory resource.
pub const IORESOURCE_MEM: u64 = 0x0000_0200;
/// `IORESOURCE_PREFETCH`: no side effects on read.
pub const IORESOURCE_PREFETCH: u64 = 0x0000_2000;
/// `IORESOURCE_MEM_64`: a 64-bit memory BAR.
pub const IORESOURCE_MEM_64: u64 = 0x0010_0000;
/// `IORESOURCE_DISABLED`.
pub const IORESOURCE_DISABLED: u64 = 0x1000_0000;
/// `IORESOURCE_UNSET`: no address assigned yet.
pub const IORESOURCE_UNSET: u64 = 0x2000_0000;
/// Smallest BAR accepted (one page; the protocol's minimum).
pub const MIN_BAR_SIZE: u64 = 4096;
/// Highest BAR index.
pub const MAX_BAR_INDEX: u8 = 5;

/// A BAR as the kernel placed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarResource {
    /// Guest physical base.
    pub start: u64,
    /// Size in bytes (`end - start + 1`): a power of two, at least 4 KiB.
    pub size: u64,
    /// The kernel's `IORESOURCE_*` flags.
    pub flags: u64,
}

/// Finds BAR `bar`'s line in the text of a `resource` file and checks it.
pub fn parse_bar(text: &str, bar: u8) -> Result<BarResource, BarProblem> {
    if bar > MAX_BAR_INDEX {
        return Err(BarProblem::Missing);
    }
    let line = text
        .lines()
        .nth(usize::from(bar))
        .ok_or(BarProblem::Missing)?;
    let mut fields = line.split_ascii_whitespace();
    let (Some(start), Some(end), Some(flags), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(BarProblem::Malformed);
    };
    let (Some(start), Some(end), Some(flags)) = (
        parse_hex_u64(start),
        parse_hex_u64(end),
        parse_hex_u64(flags),
    ) else {
        return Err(BarProblem::Malformed);
    };
    check_bar(start, end, flags)
}

fn check_bar(start: u64, end: u64, flags: u64) -> Result<BarResource, BarProblem> {
    if start == 0 && end == 0 && flags == 0 {
        return Err(BarProblem::Unassigned);
    }
    if flags & (IORESOURCE_UNSET | IORESOURCE_DISABLED) != 0 || start == 0 {
        return Err(BarProblem::NotPlaced);
    }
    if flags & IORESOURCE_MEM == 0 {
        return Err(BarProblem::NotMemory);
    }
    if flags & IORESOURCE_PREFETCH == 0 {
        return Err(BarProblem::NotPrefetchable);
    }
    if flags & IORESOURCE_MEM_64 == 0 {
        return Err(BarProblem::Not64Bit);
    }
    let size = end
        .checked_sub(start)
        .and_then(|span| span.checked_add(1))
        .ok_or(BarProblem::EndBeforeStart)?;
    if !size.is_power_of_two() {
        return Err(BarProblem::SizeNotPowerOfTwo);
    }
    if size < MIN_BAR_SIZE {
        return Err(BarProblem::TooSmall);
    }
    // `size` is a power of two, so `size - 1` is its alignment mask.
    if start & size.wrapping_sub(1) != 0 {
        return Err(BarProblem::Misaligned);
    }
    Ok(BarResource { start, size, flags })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_FLAGS: u64 = IORESOURCE_MEM | IORESOURCE_PREFETCH | IORESOURCE_MEM_64 | 0x4_000c;

    fn line(start: u64, end: u64, flags: u64) -> String {
        format!("0x{start:016x} 0x{end:016x} 0x{flags:016x}\n")
    }

    fn file(bar2: &str) -> String {
        let zero = line(0, 0, 0);
        format!("{zero}{zero}{bar2}{zero}{zero}{zero}{zero}")
    }

    #[test]
    fn good_bar() {
        let text = file(&line(0xf_8000_0000, 0xf_8fff_ffff, GOOD_FLAGS));
        assert_eq!(
            parse_bar(&text, 2),
            Ok(BarResource {
                start: 0xf_8000_0000,
                size: 0x1000_0000,
                flags: GOOD_FLAGS
            })
        );
    }

    #[test]
    fn problems_in_order() {
        let cases = [
            (line(0, 0, 0), BarProblem::Unassigned),
            (
                line(0, 0xfff, GOOD_FLAGS | IORESOURCE_UNSET),
                BarProblem::NotPlaced,
            ),
            (
                line(0x1000, 0x1fff, GOOD_FLAGS | IORESOURCE_DISABLED),
                BarProblem::NotPlaced,
            ),
            (line(0x1000, 0x1fff, 0x100), BarProblem::NotMemory),
            (
                line(0x1000, 0x1fff, IORESOURCE_MEM | IORESOURCE_MEM_64),
                BarProblem::NotPrefetchable,
            ),
            (
                line(0x1000, 0x1fff, IORESOURCE_MEM | IORESOURCE_PREFETCH),
                BarProblem::Not64Bit,
            ),
            (line(0x2000, 0x1fff, GOOD_FLAGS), BarProblem::EndBeforeStart),
            (line(1, u64::MAX, GOOD_FLAGS), BarProblem::SizeNotPowerOfTwo),
            (
                line(0x1000, 0x3fff, GOOD_FLAGS),
                BarProblem::SizeNotPowerOfTwo,
            ),
            (line(0x1000, 0x17ff, GOOD_FLAGS), BarProblem::TooSmall),
            (line(0x1000, 0x2fff, GOOD_FLAGS), BarProblem::Misaligned),
        ];
        for (bar_line, want) in cases {
            assert_eq!(parse_bar(&file(&bar_line), 2), Err(want), "{bar_line}");
        }
    }

    #[test]
    fn end_far_below_start_is_refused() {
        assert_eq!(
            parse_bar(&file(&line(u64::MAX, 0x1000, GOOD_FLAGS)), 2),
            Err(BarProblem::EndBeforeStart)
        );
    }

    #[test]
    fn malformed_lines() {
        for bad in [
            "0x1000 0x1fff\n",
            "0x1000 0x1fff 0x0 0x0\n",
            "1000 1fff 2000\n",
            "0x1000 0x1fff 0xzz\n",
            "0x00000000000000001000 0x1fff 0x2000\n",
            "\n",
        ] {
            assert_eq!(
                parse_bar(&file(bad), 2),
                Err(BarProblem::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(parse_bar("", 0), Err(BarProblem::Missing));
        assert_eq!(
            parse_bar(&file(&line(0, 0, 0)), 6),
            Err(BarProblem::Missing)
        );
        assert_eq!(parse_bar(&line(0, 0, 0), 2), Err(BarProblem::Missing));
    }
}
