//! The probe's report: one versioned JSON document (`probe-report.json`).
//!
//! Why a model of its own: the report is what a tester on a real host sends back, and what the
//! project reads months later. Its shape is fixed by [`REPORT_VERSION`] and a golden test; every
//! field is declared here in the order it is written (serde's derive keeps declaration order),
//! and evidence keeps the order it was collected in. Nothing here knows how facts are collected.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::questions::Question;

/// Version of the report format. Bump it on any change of a field's name, type or meaning.
pub const REPORT_VERSION: u32 = 1;

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// [`REPORT_VERSION`].
    pub report_version: u32,
    /// The tool that wrote it.
    pub tool: ToolInfo,
    /// When the probe ran: UTC, RFC 3339 (`2026-10-01T12:00:00Z`).
    pub generated_at: String,
    /// What was asked for on the command line.
    pub invocation: Invocation,
    /// Facts about the host that are not findings (OS, architecture, elevation).
    pub host: Evidence,
    /// One finding per check, in the fixed check order; checks not asked for are `not_run`.
    pub findings: Vec<Finding>,
}

/// The tool's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ToolInfo {
    /// `vmbmmio-devhost`.
    pub name: String,
    /// The crate version (`CARGO_PKG_VERSION`).
    pub version: String,
}

impl ToolInfo {
    /// This binary.
    pub fn this() -> Self {
        Self {
            name: "vmbmmio-devhost".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The probe's options as run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Default)]
pub struct Invocation {
    /// `--vm`, as given.
    pub vm: Option<String>,
    /// `--mapping`, the config file's path as given.
    pub mapping: Option<String>,
    /// `--experimental`.
    pub experimental: bool,
    /// `--guest-wait-secs` (the mapping check's bound on waiting for a guest access).
    pub guest_wait_secs: u64,
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// The check's stable id (`probe --help` and docs/probe.md list them).
    pub id: &'static str,
    /// The question it answers.
    pub question: Question,
    /// The answer.
    pub verdict: Verdict,
    /// One or two sentences for a human.
    pub summary: String,
    /// The raw facts the verdict was derived from, as collected.
    pub evidence: Evidence,
}

/// What a check concluded about its question.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The question, as worded, is answered "yes".
    AnsweredYes,
    /// The question, as worded, is answered "no".
    AnsweredNo,
    /// The check ran but its facts do not decide the question.
    Inconclusive,
    /// The check was not run (its option was not given, or a prerequisite is missing).
    NotRun,
    /// Collecting the facts failed (the evidence says which call and its error code).
    Error,
}

impl Verdict {
    /// The JSON spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AnsweredYes => "answered_yes",
            Self::AnsweredNo => "answered_no",
            Self::Inconclusive => "inconclusive",
            Self::NotRun => "not_run",
            Self::Error => "error",
        }
    }
}

/// One raw value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// JSON `null`: the fact does not exist (a registry value that is absent).
    Null,
    /// A boolean.
    Bool(bool),
    /// An unsigned number (counts, codes, versions).
    UInt(u64),
    /// A signed number.
    Int(i64),
    /// Text, as collected.
    Text(String),
    /// A list.
    List(Vec<Value>),
    /// Nested facts.
    Map(Evidence),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => serializer.serialize_none(),
            Self::Bool(value) => serializer.serialize_bool(*value),
            Self::UInt(value) => serializer.serialize_u64(*value),
            Self::Int(value) => serializer.serialize_i64(*value),
            Self::Text(value) => serializer.serialize_str(value),
            Self::List(values) => values.serialize(serializer),
            Self::Map(evidence) => evidence.serialize(serializer),
        }
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<u64> for Value {
    fn from(value: u64) -> Self {
        Self::UInt(value)
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Self {
        Self::UInt(u64::from(value))
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<i32> for Value {
    fn from(value: i32) -> Self {
        Self::Int(i64::from(value))
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Self::Text(value.to_string())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<Evidence> for Value {
    fn from(value: Evidence) -> Self {
        Self::Map(value)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Into::into)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(values: Vec<T>) -> Self {
        Self::List(values.into_iter().map(Into::into).collect())
    }
}

/// Named raw facts, in the order they were collected (a JSON object).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Evidence(Vec<(String, Value)>);

impl Evidence {
    /// No facts.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Adds (or replaces) `key`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.set(key, value);
        self
    }

    /// Adds `key`, or replaces its value where it already is.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.0.iter_mut().find(|(name, _)| name == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// The facts, in order.
    pub fn entries(&self) -> &[(String, Value)] {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Evidence {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl Report {
    /// The report as pretty-printed JSON, ending with a newline.
    pub fn to_json(&self) -> String {
        // Serializing this model cannot fail: every key is a string and every value a plain
        // JSON value; fall back to a minimal document rather than panic.
        match serde_json::to_string_pretty(self) {
            Ok(mut text) => {
                text.push('\n');
                text
            }
            Err(error) => format!(
                "{{\"report_version\": {REPORT_VERSION}, \"serialization_error\": {:?}}}\n",
                error.to_string()
            ),
        }
    }

    /// The finding with id `id`.
    pub fn finding(&self, id: &str) -> Option<&Finding> {
        self.findings.iter().find(|finding| finding.id == id)
    }
}
