//! The optional TOML config file: the same settings as the command line, keyed by the long
//! option names with `_` (`vm_id`, `region_sizes`, ...); the named regions are `[[region]]`
//! tables (module `regions`).
//!
//! The file is parsed into a table and read key by key, so each unknown key and each value of
//! the wrong type is its own error and nothing stops at the first problem.

use super::{ConfigError, Field, Problem, Raw, RawSettings, RawValue, Source};

/// Reads the settings in `text`. A syntax error stops everything; an unknown key or a value
/// of the wrong type is recorded in the settings (and reported by validation) while the other
/// keys are still read.
pub fn parse(text: &str) -> Result<RawSettings, Vec<ConfigError>> {
    let table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
        vec![ConfigError {
            field: Field::ConfigFile,
            source: Source::ConfigFile,
            problem: Problem::Syntax(error.to_string().trim_end().to_string()),
        }]
    })?;
    let mut settings = RawSettings::default();
    let errors = &mut settings.file_errors;
    let mut values = Vec::new();
    for (key, value) in &table {
        let Some(field) = Field::from_key(key) else {
            errors.push(ConfigError {
                field: Field::ConfigFile,
                source: Source::ConfigFile,
                problem: Problem::UnknownKey(key.clone()),
            });
            continue;
        };
        if field == Field::Regions {
            match super::regions::from_toml(value) {
                Ok((value, problems)) => {
                    errors.extend(problems.into_iter().map(|why| ConfigError {
                        field,
                        source: Source::ConfigFile,
                        problem: Problem::Invalid(why),
                    }));
                    values.push((
                        field,
                        Raw {
                            source: Source::ConfigFile,
                            value,
                        },
                    ));
                }
                Err(found) => errors.push(ConfigError {
                    field,
                    source: Source::ConfigFile,
                    problem: Problem::WrongType {
                        expected: field.expected_type(),
                        found,
                    },
                }),
            }
            continue;
        }
        match convert(field, value) {
            Ok(value) => values.push((
                field,
                Raw {
                    source: Source::ConfigFile,
                    value,
                },
            )),
            Err(found) => errors.push(ConfigError {
                field,
                source: Source::ConfigFile,
                problem: Problem::WrongType {
                    expected: field.expected_type(),
                    found,
                },
            }),
        }
    }
    for (field, raw) in values {
        settings.set(field, raw);
    }
    Ok(settings)
}

/// Converts a TOML value to the raw form of `field`, or names the type found.
fn convert(field: Field, value: &toml::Value) -> Result<RawValue, &'static str> {
    match (field, value) {
        (
            Field::InterceptFallback | Field::Loopback | Field::OfferLoopback,
            toml::Value::Boolean(flag),
        ) => Ok(RawValue::Flag(*flag)),
        (Field::InterceptFallback | Field::Loopback | Field::OfferLoopback, other) => {
            Err(other.type_str())
        }
        (Field::RegionSizes, toml::Value::Array(items)) => items
            .iter()
            .map(scalar_text)
            .collect::<Result<Vec<_>, _>>()
            .map(RawValue::List),
        (Field::RegionSizes, other) => Err(other.type_str()),
        (_, scalar) => scalar_text(scalar).map(RawValue::Text),
    }
}

/// The text of a string or integer value (numbers go through the same parsers as the CLI).
fn scalar_text(value: &toml::Value) -> Result<String, &'static str> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(number) => Ok(number.to_string()),
        other => Err(other.type_str()),
    }
}
