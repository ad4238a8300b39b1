//! Byte sizes as people write them: `4KiB`, `16G`, `1.5MiB`, `0x1000`, `4096`.
//!
//! Binary multiples throughout, as the kernel's `memparse` (`16G` = 16 GiB). Printing
//! picks the largest unit that divides the value exactly (`4KiB`, `1536KiB`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const TIB: u64 = 1 << 40;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad size `{0}`: write bytes as 4096, 0x1000, 4KiB, 4K, 16MiB, 1G or 1TiB")]
pub struct SizeError(pub String);

impl ByteSize {
    pub const fn bytes(self) -> u64 {
        self.0
    }
    pub const fn kib(n: u64) -> Self {
        ByteSize(n * KIB)
    }
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * MIB)
    }
    pub const fn gib(n: u64) -> Self {
        ByteSize(n * GIB)
    }

    pub fn parse(text: &str) -> Result<Self, SizeError> {
        let err = || SizeError(text.to_string());
        let t = text.trim().replace('_', "");
        if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            return u64::from_str_radix(hex, 16)
                .map(ByteSize)
                .map_err(|_| err());
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let mult = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => KIB,
            "m" | "mb" | "mib" => MIB,
            "g" | "gb" | "gib" => GIB,
            "t" | "tb" | "tib" => TIB,
            _ => return Err(err()),
        };
        if num.is_empty() {
            return Err(err());
        }
        if let Ok(n) = num.parse::<u64>() {
            return n.checked_mul(mult).map(ByteSize).ok_or_else(err);
        }
        let f: f64 = num.parse().map_err(|_| err())?;
        let v = f * mult as f64;
        if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 || v.fract() != 0.0 {
            return Err(err());
        }
        Ok(ByteSize(v as u64))
    }
}

impl FromStr for ByteSize {
    type Err = SizeError;
    fn from_str(s: &str) -> Result<Self, SizeError> {
        ByteSize::parse(s)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        for (unit, name) in [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
            if v >= unit && v % unit == 0 {
                return write!(f, "{}{}", v / unit, name);
            }
        }
        write!(f, "{v}B")
    }
}

impl fmt::Debug for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_write() {
        assert_eq!(ByteSize::parse("4096").unwrap().0, 4096);
        assert_eq!(ByteSize::parse("0x1000").unwrap().0, 4096);
        assert_eq!(ByteSize::parse("4KiB").unwrap().0, 4096);
        assert_eq!(ByteSize::parse("4k").unwrap().0, 4096);
        assert_eq!(ByteSize::parse("16G").unwrap().0, 16 * GIB);
        assert_eq!(ByteSize::parse("1 TiB").unwrap().0, TIB);
        assert_eq!(ByteSize::parse("1.5MiB").unwrap().0, 3 * MIB / 2);
        assert!(ByteSize::parse("12 parsecs").is_err());
        assert!(ByteSize::parse("").is_err());
        assert!(ByteSize::parse("99999999999T").is_err());
    }

    #[test]
    fn prints_exact_units() {
        assert_eq!(ByteSize(4096).to_string(), "4KiB");
        assert_eq!(ByteSize(16 * GIB).to_string(), "16GiB");
        assert_eq!(ByteSize(1536 * KIB).to_string(), "1536KiB");
        assert_eq!(ByteSize(100).to_string(), "100B");
    }
}
