//! CPU and memory amounts written the way Kubernetes writes them (`"1500m"`,
//! `"2"`, `"512Mi"`, `"2Gi"`), so one template works on every platform.
//!
//! Only the forms a person types for session resources are accepted; anything
//! else is refused with a message that shows a valid example.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("invalid cpu {0:?}: use cores (\"2\", \"0.5\") or millicores (\"1500m\")")]
    Cpu(String),
    #[error(
        "invalid memory {0:?}: use bytes with a unit such as \"512Mi\", \"2Gi\" or \"1G\" (units Ki Mi Gi Ti, k M G T)"
    )]
    Memory(String),
}

/// CPU in millicores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cpu(pub u64);

/// Memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Memory(pub u64);

impl Cpu {
    pub fn millicores(self) -> u64 {
        self.0
    }
}

impl Memory {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

/// Splits `"1.5Gi"` into `(1, 5, 1 digit, "Gi")`: whole part, fraction digits,
/// number of fraction digits and suffix. Returns `None` for anything that is
/// not a plain unsigned decimal followed by letters.
fn split_decimal(s: &str) -> Option<(u64, u64, u32, &str)> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(end);
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() || fraction.len() > 9 || (number.contains('.') && fraction.is_empty()) {
        return None;
    }
    let whole = whole.parse().ok()?;
    let frac_value = if fraction.is_empty() {
        0
    } else {
        fraction.parse().ok()?
    };
    Some((whole, frac_value, fraction.len() as u32, suffix))
}

/// `whole.fraction × unit`, exact or `None` when it overflows or is not whole.
fn scale(whole: u64, frac: u64, frac_digits: u32, unit: u64) -> Option<u64> {
    let denominator = 10u128.pow(frac_digits);
    let scaled = frac as u128 * unit as u128;
    if !scaled.is_multiple_of(denominator) {
        return None;
    }
    let fractional = scaled / denominator;
    let total = whole as u128 * unit as u128 + fractional;
    u64::try_from(total).ok()
}

impl FromStr for Cpu {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || QuantityError::Cpu(s.to_owned());
        let (whole, frac, digits, suffix) = split_decimal(s.trim()).ok_or_else(err)?;
        let unit = match suffix {
            "" => 1000,
            "m" if digits == 0 => 1,
            _ => return Err(err()),
        };
        let millis = scale(whole, frac, digits, unit).ok_or_else(err)?;
        if millis == 0 {
            return Err(err());
        }
        Ok(Cpu(millis))
    }
}

impl FromStr for Memory {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || QuantityError::Memory(s.to_owned());
        let (whole, frac, digits, suffix) = split_decimal(s.trim()).ok_or_else(err)?;
        let unit: u64 = match suffix {
            "" => 1,
            "k" => 1000,
            "M" => 1000u64.pow(2),
            "G" => 1000u64.pow(3),
            "T" => 1000u64.pow(4),
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            _ => return Err(err()),
        };
        let bytes = scale(whole, frac, digits, unit).ok_or_else(err)?;
        if bytes == 0 {
            return Err(err());
        }
        Ok(Memory(bytes))
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u32); 4] = [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)];
        for (unit, shift) in UNITS {
            if self.0 >= 1 << shift && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

macro_rules! string_serde {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_serde!(Cpu);
string_serde!(Memory);

/// OpenAPI: both are strings on the wire. The patterns describe the forms
/// [`FromStr`] accepts; it also refuses zero and fractions of a millicore or
/// a byte, with its own message.
#[cfg(feature = "openapi")]
mod openapi {
    use super::{Cpu, Memory};
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

    fn string(description: &str, pattern: &str, examples: [&str; 2]) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
            .pattern(Some(pattern))
            .examples(examples)
            .into()
    }

    impl utoipa::PartialSchema for Cpu {
        fn schema() -> RefOr<Schema> {
            string(
                "CPU as cores (\"2\", \"0.5\") or millicores (\"1500m\").",
                r"^([0-9]+(\.[0-9]{1,9})?|[0-9]+m)$",
                ["1500m", "2"],
            )
        }
    }

    impl utoipa::ToSchema for Cpu {}

    impl utoipa::PartialSchema for Memory {
        fn schema() -> RefOr<Schema> {
            string(
                "Memory in bytes, with an optional unit: Ki Mi Gi Ti (powers of 1024) or k M G T \
                 (powers of 1000).",
                r"^[0-9]+(\.[0-9]{1,9})?(k|M|G|T|Ki|Mi|Gi|Ti)?$",
                ["512Mi", "2Gi"],
            )
        }
    }

    impl utoipa::ToSchema for Memory {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_accepts_cores_and_millicores() {
        assert_eq!("1000m".parse::<Cpu>(), Ok(Cpu(1000)));
        assert_eq!("2".parse::<Cpu>(), Ok(Cpu(2000)));
        assert_eq!("0.5".parse::<Cpu>(), Ok(Cpu(500)));
        assert_eq!("2.25".parse::<Cpu>(), Ok(Cpu(2250)));
        assert_eq!("250m".parse::<Cpu>(), Ok(Cpu(250)));
    }

    #[test]
    fn cpu_rejects_nonsense() {
        for bad in [
            "", "m", "-1", "1.5m", "two", "1 core", "0", "0.0001", "1.", ".5",
        ] {
            assert!(bad.parse::<Cpu>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn memory_accepts_binary_and_decimal_units() {
        assert_eq!("2Gi".parse::<Memory>(), Ok(Memory(2 << 30)));
        assert_eq!("512Mi".parse::<Memory>(), Ok(Memory(512 << 20)));
        assert_eq!("1G".parse::<Memory>(), Ok(Memory(1_000_000_000)));
        assert_eq!("1.5Gi".parse::<Memory>(), Ok(Memory(3 << 29)));
        assert_eq!("1048576".parse::<Memory>(), Ok(Memory(1 << 20)));
    }

    #[test]
    fn memory_rejects_nonsense() {
        for bad in [
            "",
            "2 gigs",
            "2GB",
            "Gi",
            "-1Gi",
            "0",
            "1.5",
            "99999999999999Ti",
        ] {
            assert!(bad.parse::<Memory>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["1500m", "2", "250m"] {
            assert_eq!(text.parse::<Cpu>().map(|c| c.to_string()), Ok(text.into()));
        }
        for text in ["2Gi", "512Mi", "1000", "3Ki"] {
            assert_eq!(
                text.parse::<Memory>().map(|m| m.to_string()),
                Ok(text.into())
            );
        }
        assert_eq!(Memory(1_000_000_000).to_string(), "1000000000");
    }

    #[test]
    fn serde_uses_strings() {
        let cpu: Cpu = serde_json::from_str("\"1500m\"").expect("valid cpu");
        assert_eq!(
            serde_json::to_string(&cpu).expect("serializes"),
            "\"1500m\""
        );
        let err = serde_json::from_str::<Memory>("\"2 gigs\"").expect_err("invalid memory");
        assert!(err.to_string().contains("512Mi"), "{err}");
    }
}
