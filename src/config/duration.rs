//! Durations as the seed writes them (integer seconds), plus human-readable strings.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use std::fmt;
use std::time::Duration;

/// A duration that deserializes from integer seconds (`60`, the seed's form), fractional
/// seconds (`0.5`) or a human-readable string (`"1m"`, `"500ms"`), and serializes as the
/// human-readable string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds(pub Duration);

impl Seconds {
    pub const fn from_secs(secs: u64) -> Self {
        Seconds(Duration::from_secs(secs))
    }

    pub const fn from_millis(millis: u64) -> Self {
        Seconds(Duration::from_millis(millis))
    }

    pub fn get(self) -> Duration {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<Seconds> for Duration {
    fn from(value: Seconds) -> Self {
        value.0
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Seconds;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration: seconds (e.g. 60) or a string such as \"1m\" or \"500ms\"")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds::from_secs(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v)
                    .map(Seconds::from_secs)
                    .map_err(|_| E::custom(format!("duration must not be negative, got {v}")))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                Duration::try_from_secs_f64(v)
                    .map(Seconds)
                    .map_err(|_| E::custom(format!("duration must be a non-negative number of seconds, got {v}")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                let v = v.trim();
                if let Ok(secs) = v.parse::<u64>() {
                    return Ok(Seconds::from_secs(secs));
                }
                humantime::parse_duration(v).map(Seconds).map_err(|e| E::custom(format!("invalid duration {v:?}: {e}")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Seconds, serde_yaml_ng::Error> {
        serde_yaml_ng::from_str(yaml)
    }

    #[test]
    fn accepts_the_seeds_integer_seconds() {
        assert_eq!(parse("3600").unwrap().get(), Duration::from_secs(3600));
        assert_eq!(parse("\"60\"").unwrap().get(), Duration::from_secs(60));
    }

    #[test]
    fn accepts_fractions_and_human_strings() {
        assert_eq!(parse("0.25").unwrap().get(), Duration::from_millis(250));
        assert_eq!(parse("500ms").unwrap().get(), Duration::from_millis(500));
        assert_eq!(parse("1m 30s").unwrap().get(), Duration::from_secs(90));
    }

    #[test]
    fn rejects_negative_and_garbage() {
        assert!(parse("-1").unwrap_err().to_string().contains("negative"));
        assert!(parse("soon").unwrap_err().to_string().contains("invalid duration"));
    }

    #[test]
    fn displays_round_trip() {
        for text in ["0s", "1h", "1m 30s", "250ms"] {
            let d = parse(text).unwrap();
            assert_eq!(parse(&d.to_string()).unwrap(), d);
        }
    }
}
