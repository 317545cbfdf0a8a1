//! Resource quantities, parsed the Kubernetes way: `500m` or `2` CPUs, `512Mi` or `4G` of memory, and the
//! whole numbers of GPUs. Every executor sees the same parsed amounts (millicores and bytes), so a
//! container's cgroup limit and a pod's request mean the same thing.

use std::fmt;

/// A parsed quantity in its smallest unit: thousandths (`cpu` in millicores) or whole units (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    /// The amount in thousandths of the quantity's unit (so `500m` is 500 and `2` is 2,000).
    milli: u128,
}

/// Why a quantity does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{0:?} is not a quantity (a number with an optional suffix such as m, k, M, G, Ki, Mi, Gi)")]
    Malformed(String),
    #[error("{0:?} is negative")]
    Negative(String),
    #[error("{0:?} has unknown suffix {1:?} (known: m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei, or an exponent e3)")]
    UnknownSuffix(String, String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// The suffixes Kubernetes accepts, with the power of ten (decimal) or two (binary) they stand for.
const DECIMAL_SUFFIXES: [(&str, i32); 7] = [
    ("m", -3),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];
const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];

impl Quantity {
    /// Parses `text` (`500m`, `1.5`, `2Gi`, `128974848`, `129e6`).
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let malformed = || QuantityError::Malformed(text.to_string());
        let trimmed = text.trim();
        if trimmed.starts_with('-') {
            return Err(QuantityError::Negative(text.to_string()));
        }
        let unsigned = trimmed.strip_prefix('+').unwrap_or(trimmed);
        let number_end = unsigned
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(unsigned.len());
        let (number, suffix) = unsigned.split_at(number_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(malformed());
        }
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        // The amount as an integer of thousandths (fraction digits past three are refused, like a
        // Kubernetes quantity finer than a milli-unit would be rounded; we say so instead).
        let scale = |mantissa: u128, exponent: i32| -> Result<u128, QuantityError> {
            let too_large = || QuantityError::TooLarge(text.to_string());
            if exponent >= 0 {
                10u128
                    .checked_pow(exponent as u32)
                    .and_then(|power| mantissa.checked_mul(power))
                    .ok_or_else(too_large)
            } else {
                let divisor = 10u128.pow((-exponent) as u32);
                if !mantissa.is_multiple_of(divisor) {
                    return Err(QuantityError::Malformed(format!(
                        "{text} (finer than a thousandth)"
                    )));
                }
                Ok(mantissa / divisor)
            }
        };
        let digits = format!("{whole}{fraction}");
        let mantissa: u128 = digits.parse().map_err(|_| malformed())?;
        // mantissa * 10^-len(fraction) units = mantissa * 10^(3 - len(fraction)) thousandths.
        let base_exponent = 3 - fraction.len() as i32;
        let milli = if suffix.is_empty() {
            scale(mantissa, base_exponent)?
        } else if let Some((_, exponent)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
            scale(mantissa, base_exponent + exponent)?
        } else if let Some((_, bits)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
            let thousandths = scale(mantissa, base_exponent)?;
            thousandths
                .checked_mul(1u128 << bits)
                .ok_or_else(|| QuantityError::TooLarge(text.to_string()))?
        } else if let Some(exponent) = suffix.strip_prefix(['e', 'E']) {
            let exponent: i32 = exponent
                .parse()
                .map_err(|_| QuantityError::UnknownSuffix(text.to_string(), suffix.to_string()))?;
            if !(-3..=18).contains(&exponent) {
                return Err(QuantityError::TooLarge(text.to_string()));
            }
            scale(mantissa, base_exponent + exponent)?
        } else {
            return Err(QuantityError::UnknownSuffix(text.to_string(), suffix.to_string()));
        };
        if milli > u64::MAX as u128 * 1000 {
            return Err(QuantityError::TooLarge(text.to_string()));
        }
        Ok(Quantity { milli })
    }

    /// The quantity in thousandths of its unit (millicores for CPU).
    pub fn milli(self) -> u64 {
        self.milli.min(u64::MAX as u128) as u64
    }

    /// The quantity in whole units, rounded up (bytes for memory; a fraction of a byte is a byte).
    pub fn units(self) -> u64 {
        self.milli.div_ceil(1000).min(u64::MAX as u128) as u64
    }

    /// Whether the quantity is a whole number of units (GPUs cannot be shared by fraction).
    pub fn is_whole(self) -> bool {
        self.milli.is_multiple_of(1000)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.milli.is_multiple_of(1000) {
            write!(f, "{}", self.milli / 1000)
        } else {
            write!(f, "{}m", self.milli)
        }
    }
}

/// A byte count as people read it (`512 MiB`, `4 GiB`), for messages that name a limit.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes >= size && bytes.is_multiple_of((size / 16).max(1)) {
            let value = bytes as f64 / size as f64;
            return if value.fract() == 0.0 {
                format!("{} {unit}", value as u64)
            } else {
                format!("{value:.2} {unit}")
            };
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cpu_quantities_parse_to_millicores() {
        assert_eq!(Quantity::parse("500m").unwrap().milli(), 500);
        assert_eq!(Quantity::parse("2").unwrap().milli(), 2_000);
        assert_eq!(Quantity::parse("0.5").unwrap().milli(), 500);
        assert_eq!(Quantity::parse("1.25").unwrap().milli(), 1_250);
        assert_eq!(Quantity::parse("+3").unwrap().milli(), 3_000);
    }

    #[test]
    fn memory_quantities_parse_to_bytes() {
        assert_eq!(Quantity::parse("512Mi").unwrap().units(), 512 << 20);
        assert_eq!(Quantity::parse("4Gi").unwrap().units(), 4 << 30);
        assert_eq!(Quantity::parse("1G").unwrap().units(), 1_000_000_000);
        assert_eq!(Quantity::parse("128974848").unwrap().units(), 128_974_848);
        assert_eq!(Quantity::parse("129e6").unwrap().units(), 129_000_000);
        assert_eq!(Quantity::parse("1.5Gi").unwrap().units(), 3 << 29);
        assert_eq!(Quantity::parse("100k").unwrap().units(), 100_000);
    }

    #[test]
    fn bad_quantities_are_refused_with_the_reason() {
        assert!(matches!(Quantity::parse("-1"), Err(QuantityError::Negative(_))));
        assert!(matches!(Quantity::parse("4GB"), Err(QuantityError::UnknownSuffix(_, s)) if s == "GB"));
        assert!(matches!(
            Quantity::parse("lots"),
            Err(QuantityError::Malformed(_))
        ));
        assert!(matches!(Quantity::parse(""), Err(QuantityError::Malformed(_))));
        assert!(matches!(
            Quantity::parse("1.2.3"),
            Err(QuantityError::Malformed(_))
        ));
        assert!(matches!(
            Quantity::parse("0.0001"),
            Err(QuantityError::Malformed(_))
        ));
        assert!(matches!(
            Quantity::parse("99999999999999999999Ei"),
            Err(QuantityError::TooLarge(_))
        ));
    }

    #[test]
    fn limits_read_as_people_write_them() {
        assert_eq!(human_bytes(64 << 20), "64 MiB");
        assert_eq!(human_bytes(3 << 29), "1.50 GiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
        assert_eq!(Quantity::parse("500m").unwrap().to_string(), "500m");
        assert_eq!(Quantity::parse("2").unwrap().to_string(), "2");
    }
}
