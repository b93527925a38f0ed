//! The value formats of the configuration structs that serde cannot read on its own: durations
//! written for people (`"5s"`, `"250ms"`, `"1m 30s"`), and settings that can be turned `"off"`.
//!
//! Each function reads one present value; an absent key never reaches them (the structs are
//! `#[serde(default)]`), so they wrap what they read in `Some`. They accept numbers written as
//! strings too, because an environment variable is always a string.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Unexpected, Visitor};

/// The word that turns a setting off.
const OFF: &str = "off";

/// A duration: `"5s"`, `"250ms"`, `"1m 30s"`.
pub(crate) fn duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserializer.deserialize_any(DurationOrOff { off_allowed: false }).map(|value| value.flatten())
}

/// A duration, or `"off"` (read as `Some(None)`).
pub(crate) fn duration_or_off<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<Duration>>, D::Error> {
    deserializer.deserialize_any(DurationOrOff { off_allowed: true })
}

/// A count of at least 0, or `"off"` (read as `Some(None)`).
pub(crate) fn count_or_off<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<u32>>, D::Error> {
    deserializer.deserialize_any(CountOrOff)
}

/// A number, or `"off"` (read as `Some(None)`).
pub(crate) fn number_or_off<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<f64>>, D::Error> {
    deserializer.deserialize_any(NumberOrOff)
}

/// Reads a duration; `Some(None)` stands for `"off"`, which only `off_allowed` accepts.
struct DurationOrOff {
    off_allowed: bool,
}

impl Visitor<'_> for DurationOrOff {
    type Value = Option<Option<Duration>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"5s\", \"250ms\" or \"1m 30s\"")?;
        if self.off_allowed {
            f.write_str(", or \"off\"")?;
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        let text = text.trim();
        if self.off_allowed && text.eq_ignore_ascii_case(OFF) {
            return Ok(Some(None));
        }
        match humantime::parse_duration(text) {
            Ok(duration) => Ok(Some(Some(duration))),
            Err(_) => Err(E::invalid_value(Unexpected::Str(text), &self)),
        }
    }
}

/// Reads a count, or `"off"`.
struct CountOrOff;

impl Visitor<'_> for CountOrOff {
    type Value = Option<Option<u32>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number, or \"off\"")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        match u32::try_from(value) {
            Ok(count) => Ok(Some(Some(count))),
            Err(_) => Err(E::invalid_value(Unexpected::Unsigned(value), &self)),
        }
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        match u32::try_from(value) {
            Ok(count) => Ok(Some(Some(count))),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(value), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        let text = text.trim();
        if text.eq_ignore_ascii_case(OFF) {
            return Ok(Some(None));
        }
        match text.parse::<u32>() {
            Ok(count) => Ok(Some(Some(count))),
            Err(_) => Err(E::invalid_value(Unexpected::Str(text), &self)),
        }
    }
}

/// Reads a number, or `"off"`.
struct NumberOrOff;

impl Visitor<'_> for NumberOrOff {
    type Value = Option<Option<f64>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, or \"off\"")
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        Ok(Some(Some(value)))
    }

    #[allow(clippy::cast_precision_loss, reason = "a setting, not an exact count")]
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Some(Some(value as f64)))
    }

    #[allow(clippy::cast_precision_loss, reason = "a setting, not an exact count")]
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Some(Some(value as f64)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        let text = text.trim();
        if text.eq_ignore_ascii_case(OFF) {
            return Ok(Some(None));
        }
        match text.parse::<f64>() {
            Ok(number) => Ok(Some(Some(number))),
            Err(_) => Err(E::invalid_value(Unexpected::Str(text), &self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::Deserialize;
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error, StrDeserializer, U64Deserializer};

    fn str_de(text: &str) -> StrDeserializer<'_, Error> {
        text.into_deserializer()
    }

    #[test]
    fn durations_are_read_as_people_write_them() {
        let read = |text| super::duration(str_de(text));
        assert_eq!(read("5s"), Ok(Some(Duration::from_secs(5))));
        assert_eq!(read("250ms"), Ok(Some(Duration::from_millis(250))));
        assert_eq!(read("1m 30s"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(read(" 2h "), Ok(Some(Duration::from_secs(7200))));
        let err = read("soon").unwrap_err().to_string();
        assert!(err.contains("\"soon\"") && err.contains("a duration such as"), "{err}");
        // A bare number has no unit, so it is refused rather than guessed.
        assert!(read("5").is_err());
        let number: U64Deserializer<Error> = 5u64.into_deserializer();
        assert!(super::duration(number).is_err());
        assert!(read("off").is_err(), "only settings that can be off take \"off\"");
    }

    #[test]
    fn off_turns_a_setting_off() {
        assert_eq!(super::duration_or_off(str_de("off")), Ok(Some(None)));
        assert_eq!(super::duration_or_off(str_de("OFF")), Ok(Some(None)));
        assert_eq!(super::duration_or_off(str_de("1s")), Ok(Some(Some(Duration::from_secs(1)))));
        assert_eq!(super::count_or_off(str_de("off")), Ok(Some(None)));
        assert_eq!(super::count_or_off(str_de("7")), Ok(Some(Some(7))));
        let number: U64Deserializer<Error> = 7u64.into_deserializer();
        assert_eq!(super::count_or_off(number), Ok(Some(Some(7))));
        let huge: U64Deserializer<Error> = u64::MAX.into_deserializer();
        assert!(super::count_or_off(huge).is_err());
        assert!(super::count_or_off(str_de("-1")).is_err());
        assert_eq!(super::number_or_off(str_de("off")), Ok(Some(None)));
        assert_eq!(super::number_or_off(str_de("2.5")), Ok(Some(Some(2.5))));
        let number: U64Deserializer<Error> = 3u64.into_deserializer();
        assert_eq!(super::number_or_off(number), Ok(Some(Some(3.0))));
        assert!(super::number_or_off(str_de("fast")).is_err());
    }

    #[test]
    fn a_struct_field_reads_through_the_helpers() {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default, deserialize_with = "super::duration_or_off")]
            keepalive: Option<Option<Duration>>,
        }
        let probe: Probe = Probe::deserialize(serde::de::value::MapDeserializer::<_, Error>::new(
            [("keepalive", "off")].into_iter(),
        ))
        .unwrap();
        assert_eq!(probe.keepalive, Some(None));
    }
}
