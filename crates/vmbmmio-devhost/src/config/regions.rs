//! The regions: named, with an access mode (`--region NAME:SIZE[:ACCESS]`, `[[region]]`
//! tables), or the older shorthand of sizes alone (`--region-size`, `region_sizes`).
//!
//! # Why it looks like this
//! Host consumers attach to a region by the VM's id and the region's name (docs/ioctl.md,
//! OPEN_SESSION version 2), so every region has a name, and the name rules are the driver's
//! (`RegionName::required`: 1..=32 bytes of UTF-8, no NUL, no ASCII control characters; unique,
//! compared bytewise), checked here so that an operator hears about a bad name before the VM
//! is touched. The shorthand stays for existing command lines and files: it names the regions
//! `region0`, `region1`, ... and gives them [`AccessMode::ReadWrite`], the guest-writable access
//! every region had before names existed. Mixing both forms is refused, also across the command
//! line and the file: a `--region-size` that silently dropped the file's names (or the other way
//! round) would change what consumers can attach to without a word.
//!
//! Like every other setting, each problem is its own error naming the region (index and, when
//! known, name) and the offending text, and validation goes on after one.

use std::collections::BTreeMap;

use super::{Field, Problem, RawValue, Source, Validator, values};
use crate::driver::{AccessMode, RegionIdentity, RegionName, default_region_name};
use crate::layout::{BarLayout, LayoutError, MAX_REGIONS};
use vmbmmio_proto::guest::NameError;

/// One validated region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionConfig {
    /// Its name, unique in the configuration.
    pub name: RegionName,
    /// Who may write it.
    pub access: AccessMode,
    /// Its size as given, in bytes.
    pub requested_size: u64,
    /// Its size rounded up to whole 4 KiB pages: what the device host asks the driver for.
    pub size: u64,
}

impl RegionConfig {
    /// Its name and access, as the driver request carries them.
    pub const fn identity(&self) -> RegionIdentity {
        RegionIdentity {
            name: self.name,
            access: self.access,
        }
    }
}

/// One value of a region's key before validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) enum Slot {
    /// Not given.
    #[default]
    Absent,
    /// Given as this text.
    Given(String),
    /// Given with the wrong type: already reported, not validated again.
    Bad,
}

/// One region entry before validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct RawRegion {
    /// The command line's `NAME:SIZE[:ACCESS]` text, quoted in errors; `None` from the file.
    pub spec: Option<String>,
    pub name: Slot,
    pub size: Slot,
    pub access: Slot,
}

/// The region keys of a `[[region]]` table.
const TABLE_KEYS: [&str; 3] = ["name", "size", "access"];

/// Splits a `--region` value: the name is the text before the first `:`, the size the text up
/// to the next `:` and the access mode the rest (so a name given on the command line cannot
/// contain `:`; the config file takes any valid name). A value without `:` has no size.
pub(super) fn from_cli(spec: &str) -> RawRegion {
    let (name, rest) = match spec.split_once(':') {
        Some((name, rest)) => (name, Some(rest)),
        None => (spec, None),
    };
    let (size, access) = match rest.map(|rest| rest.split_once(':')) {
        None => (Slot::Absent, Slot::Absent),
        Some(None) => (
            Slot::Given(rest.unwrap_or_default().to_string()),
            Slot::Absent,
        ),
        Some(Some((size, access))) => (
            Slot::Given(size.to_string()),
            Slot::Given(access.to_string()),
        ),
    };
    RawRegion {
        spec: Some(spec.to_string()),
        name: Slot::Given(name.to_string()),
        size,
        access,
    }
}

/// The `region` key of the config file: an array of tables (`[[region]]`). `Err` names the
/// TOML type found when it is not an array; the problems of single entries (not a table, an
/// unknown key, a key of the wrong type) are returned with the entries, each with its text.
pub(super) fn from_toml(value: &toml::Value) -> Result<(RawValue, Vec<String>), &'static str> {
    let toml::Value::Array(items) = value else {
        return Err(value.type_str());
    };
    let mut problems = Vec::new();
    let mut regions = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let toml::Value::Table(table) = item else {
            problems.push(format!(
                "region {index}: expected a table (name, size, access), found {}",
                item.type_str()
            ));
            regions.push(RawRegion {
                name: Slot::Bad,
                size: Slot::Bad,
                access: Slot::Bad,
                ..RawRegion::default()
            });
            continue;
        };
        let mut region = RawRegion::default();
        for (key, value) in table {
            let slot = match key.as_str() {
                "name" => &mut region.name,
                "size" => &mut region.size,
                "access" => &mut region.access,
                _ => {
                    problems.push(format!(
                        "region {index}: unknown key {key:?}; known keys: {}",
                        TABLE_KEYS.join(", ")
                    ));
                    continue;
                }
            };
            *slot = match (key.as_str(), value) {
                (_, toml::Value::String(text)) => Slot::Given(text.clone()),
                ("size", toml::Value::Integer(number)) => Slot::Given(number.to_string()),
                (key, other) => {
                    let expected = if key == "size" {
                        "a size (string or integer)"
                    } else {
                        "a string"
                    };
                    problems.push(format!(
                        "region {index}: {key}: expected {expected}, found {}",
                        other.type_str()
                    ));
                    Slot::Bad
                }
            };
        }
        regions.push(region);
    }
    Ok((RawValue::Regions(regions), problems))
}

/// Why a name is refused, in the operator's words.
fn name_problem(error: NameError) -> String {
    match error {
        NameError::TooLong { len } => format!(
            "is {len} bytes long; a region name has at most {} bytes of UTF-8",
            vmbmmio_proto::guest::REGION_NAME_LEN
        ),
        NameError::InteriorNul { at } => format!("has a NUL character at byte {at}"),
        NameError::NotUtf8 => "is not UTF-8".to_string(),
        NameError::Empty => "is empty; every region needs a name".to_string(),
        NameError::ControlCharacter { at } => {
            format!("has an ASCII control character at byte {at}")
        }
    }
}

/// How to name region `index` in a message: its index, the command-line text it came from.
fn label(index: usize, raw: &RawRegion) -> String {
    match &raw.spec {
        Some(spec) => format!("region {index} ({spec:?})"),
        None => format!("region {index}"),
    }
}

impl Validator<'_> {
    /// The regions of either form, checked: `None` when a problem was reported.
    pub(super) fn regions(&mut self) -> Option<Vec<RegionConfig>> {
        let named = self.settings.values.get(&Field::Regions);
        let sizes = self.settings.values.get(&Field::RegionSizes);
        let regions = match (named, sizes) {
            (Some(named), Some(sizes)) => {
                let (named_source, sizes_source) = (named.source, sizes.source);
                let why = format!(
                    "both forms of the regions are given: {} and {}; use either named regions \
                     (--region NAME:SIZE[:ACCESS] / [[region]] tables) or the sizes shorthand \
                     (--region-size / region_sizes), not both",
                    describe(Field::Regions, named_source),
                    describe(Field::RegionSizes, sizes_source),
                );
                self.error(Field::Regions, named_source, Problem::Invalid(why));
                return None;
            }
            (None, None) => {
                self.missing(Field::Regions);
                return None;
            }
            (Some(_), None) => self.named_regions()?,
            (None, Some(_)) => self.sized_regions()?,
        };
        self.plan(regions)
    }

    /// `[[region]]` / `--region`, each entry checked.
    fn named_regions(&mut self) -> Option<Vec<Partial>> {
        let field = Field::Regions;
        let raw = self.settings.values.get(&field)?;
        let source = raw.source;
        let RawValue::Regions(entries) = &raw.value else {
            let why = "expected region entries".to_string();
            self.error(field, source, Problem::Invalid(why));
            return None;
        };
        let entries = entries.clone();
        if !self.count_ok(field, source, entries.len()) {
            return None;
        }
        let mut regions = Vec::with_capacity(entries.len());
        let mut first_use: BTreeMap<[u8; vmbmmio_proto::guest::REGION_NAME_LEN], usize> =
            BTreeMap::new();
        let mut ok = true;
        for (index, entry) in entries.iter().enumerate() {
            let label = label(index, entry);
            let report = |this: &mut Self, why: String| {
                this.error(field, source, Problem::Invalid(format!("{label}: {why}")));
            };
            let name = match &entry.name {
                Slot::Given(text) => match RegionName::required(text) {
                    Ok(name) => Some(name),
                    Err(error) => {
                        report(self, format!("name {text:?} {}", name_problem(error)));
                        None
                    }
                },
                Slot::Absent => {
                    report(self, "no name (every region needs one)".to_string());
                    None
                }
                Slot::Bad => None,
            };
            if let Some(name) = name {
                if let Some(first) = first_use.get(&name.to_wire()) {
                    report(
                        self,
                        format!(
                            "name {:?} is already the name of region {first}; names are unique \
                             per VM",
                            name.as_str()
                        ),
                    );
                    ok = false;
                } else {
                    first_use.insert(name.to_wire(), index);
                }
            }
            let size = match &entry.size {
                Slot::Given(text) => match values::parse_size(text) {
                    Ok(0) => {
                        report(self, format!("size {text:?} is zero"));
                        None
                    }
                    Ok(size) => Some(size),
                    Err(why) => {
                        report(self, why);
                        None
                    }
                },
                Slot::Absent => {
                    let why = if entry.spec.is_some() {
                        "no size: write NAME:SIZE[:ACCESS], e.g. frames:16MiB:guest-ro"
                    } else {
                        "no size"
                    };
                    report(self, why.to_string());
                    None
                }
                Slot::Bad => None,
            };
            let access = match &entry.access {
                Slot::Given(text) => match AccessMode::from_name(text) {
                    Some(access) => Some(access),
                    None => {
                        report(
                            self,
                            format!(
                                "access {text:?} is not one of {}",
                                AccessMode::ALL.map(AccessMode::as_str).join(", ")
                            ),
                        );
                        None
                    }
                },
                Slot::Absent => Some(AccessMode::default()),
                Slot::Bad => None,
            };
            match (name, size, access) {
                (Some(name), Some(size), Some(access)) => regions.push(Partial {
                    name,
                    access,
                    requested_size: size,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(regions)
    }

    /// `region_sizes` / `--region-size`: named `region0`, `region1`, ..., read-write.
    fn sized_regions(&mut self) -> Option<Vec<Partial>> {
        let field = Field::RegionSizes;
        let raw = self.settings.values.get(&field)?;
        let source = raw.source;
        let texts = match &raw.value {
            RawValue::List(texts) => texts.clone(),
            RawValue::Text(text) => vec![text.clone()],
            RawValue::Flag(_) | RawValue::Regions(_) => {
                let why = "expected sizes".to_string();
                self.error(field, source, Problem::Invalid(why));
                return None;
            }
        };
        if !self.count_ok(field, source, texts.len()) {
            return None;
        }
        let mut regions = Vec::with_capacity(texts.len());
        let mut ok = true;
        for (index, text) in texts.iter().enumerate() {
            match values::parse_size(text) {
                Ok(0) => {
                    let why = format!("region {index}: size {text:?} is zero");
                    self.error(field, source, Problem::Invalid(why));
                    ok = false;
                }
                Ok(size) => regions.push(Partial {
                    name: default_region_name(index),
                    access: AccessMode::ReadWrite,
                    requested_size: size,
                }),
                Err(why) => {
                    let why = format!("region {index}: {why}");
                    self.error(field, source, Problem::Invalid(why));
                    ok = false;
                }
            }
        }
        ok.then_some(regions)
    }

    /// Reports a count outside 1..=[`MAX_REGIONS`].
    fn count_ok(&mut self, field: Field, source: Source, count: usize) -> bool {
        let why = if count == 0 {
            "at least one region is needed".to_string()
        } else if count > MAX_REGIONS {
            format!("{count} regions; at most {MAX_REGIONS} are supported")
        } else {
            return true;
        };
        self.error(field, source, Problem::Invalid(why));
        false
    }

    /// The regions with their sizes rounded, if the packed layout fits one BAR.
    fn plan(&mut self, regions: Vec<Partial>) -> Option<Vec<RegionConfig>> {
        let field = if self.settings.values.contains_key(&Field::Regions) {
            Field::Regions
        } else {
            Field::RegionSizes
        };
        let source = self.source(field);
        let sizes: Vec<u64> = regions.iter().map(|region| region.requested_size).collect();
        match BarLayout::plan(&sizes) {
            Ok(layout) => Some(
                regions
                    .iter()
                    .zip(layout.regions())
                    .map(|(region, placed)| RegionConfig {
                        name: region.name,
                        access: region.access,
                        requested_size: region.requested_size,
                        size: placed.size,
                    })
                    .collect(),
            ),
            Err(error @ LayoutError::TooLarge) => {
                let why = format!("the regions do not fit one BAR: {error}");
                self.error(field, source, Problem::Invalid(why));
                None
            }
            Err(error) => {
                self.error(field, source, Problem::Invalid(error.to_string()));
                None
            }
        }
    }
}

/// A region checked except for the layout.
struct Partial {
    name: RegionName,
    access: AccessMode,
    requested_size: u64,
}

/// "--region (command line)" / "region_sizes (config file)".
fn describe(field: Field, source: Source) -> String {
    match source {
        Source::CommandLine => field.flag().to_string(),
        Source::ConfigFile | Source::Missing => format!("{} in the config file", field.key()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cli_value_splits_at_the_first_two_colons() {
        let raw = from_cli("frames:16MiB:guest-ro");
        assert_eq!(raw.name, Slot::Given("frames".into()));
        assert_eq!(raw.size, Slot::Given("16MiB".into()));
        assert_eq!(raw.access, Slot::Given("guest-ro".into()));
        let raw = from_cli("frames:4096");
        assert_eq!(raw.size, Slot::Given("4096".into()));
        assert_eq!(raw.access, Slot::Absent);
        let raw = from_cli("frames");
        assert_eq!(raw.name, Slot::Given("frames".into()));
        assert_eq!((raw.size, raw.access), (Slot::Absent, Slot::Absent));
        let raw = from_cli("a:1:rw:x");
        assert_eq!(raw.access, Slot::Given("rw:x".into()));
        let raw = from_cli(":4K");
        assert_eq!(raw.name, Slot::Given(String::new()));
    }
}
