//! Kubernetes quantity arithmetic for `resources`: parse `500m`, `1.5`, `512Mi`, `1e3`, add exactly, and
//! render the sum canonically (`1500m`, `1`, `512Mi`, `1Gi`).
//!
//! Pure functions over strings: no k8s types, no I/O. A quantity it cannot parse is reported, never guessed.

/// Exact value in nano-units (1e-9), wide enough for `E` and `Ei` suffixes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quantity {
    nanos: i128,
    /// Whether a binary suffix (`Ki`, `Mi`, ...) was used: the sum is then rendered in binary units.
    binary: bool,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        if s.is_empty() || s.len() > 64 {
            return None;
        }
        let (sign, rest) = match s.as_bytes()[0] {
            b'-' => (-1i128, &s[1..]),
            b'+' => (1, &s[1..]),
            _ => (1, s),
        };
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(num_end);
        if number.is_empty() || number == "." {
            return None;
        }
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if frac_part.contains('.') || frac_part.len() > 18 || int_part.len() > 24 {
            return None;
        }
        // Mantissa as an integer over 10^frac_len.
        let digits = format!("{int_part}{frac_part}");
        let mantissa: i128 = digits.parse().ok()?;
        let frac_len = frac_part.len() as u32;
        let (num, den, binary): (i128, i128, bool) = match suffix {
            "" => (1, 1, false),
            "n" => (1, NANO, false),
            "u" => (1, 1_000_000, false),
            "m" => (1, 1_000, false),
            "k" => (1_000, 1, false),
            "M" => (1_000_000, 1, false),
            "G" => (1_000_000_000, 1, false),
            "T" => (1_000_000_000_000, 1, false),
            "P" => (1_000_000_000_000_000, 1, false),
            "E" => (1_000_000_000_000_000_000, 1, false),
            "Ki" => (1 << 10, 1, true),
            "Mi" => (1 << 20, 1, true),
            "Gi" => (1 << 30, 1, true),
            "Ti" => (1 << 40, 1, true),
            "Pi" => (1 << 50, 1, true),
            "Ei" => (1 << 60, 1, true),
            exp if exp.starts_with(['e', 'E']) => {
                let e: i32 = exp[1..].parse().ok()?;
                if !(-9..=18).contains(&e) {
                    return None;
                }
                if e >= 0 { (10i128.pow(e as u32), 1, false) } else { (1, 10i128.pow((-e) as u32), false) }
            }
            _ => return None,
        };
        let scaled = mantissa.checked_mul(num)?.checked_mul(NANO)?;
        let den = den.checked_mul(10i128.pow(frac_len))?;
        // Sub-nano precision rounds up, as Kubernetes rounds quantities up to its smallest scale.
        let nanos = scaled.checked_add(den - 1)? / den;
        Some(Quantity { nanos: sign * nanos, binary })
    }

    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        Some(Quantity { nanos: self.nanos.checked_add(other.nanos)?, binary: self.binary || other.binary })
    }

    /// Canonical text: the largest suffix that represents the value exactly.
    pub fn render(self) -> String {
        let n = self.nanos;
        if n == 0 {
            return "0".into();
        }
        if n % NANO != 0 {
            return if n % 1_000_000 == 0 {
                format!("{}m", n / 1_000_000)
            } else if n % 1_000 == 0 {
                format!("{}u", n / 1_000)
            } else {
                format!("{n}n")
            };
        }
        let whole = n / NANO;
        if self.binary {
            for (suffix, shift) in [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
                let unit = 1i128 << shift;
                if whole % unit == 0 {
                    return format!("{}{suffix}", whole / unit);
                }
            }
            return whole.to_string();
        }
        for (suffix, exp) in [("E", 18), ("P", 15), ("T", 12), ("G", 9), ("M", 6), ("k", 3)] {
            let unit = 10i128.pow(exp);
            if whole % unit == 0 {
                return format!("{}{suffix}", whole / unit);
            }
        }
        whole.to_string()
    }
}

/// Sum quantities per resource name. Values that do not parse are skipped (and reported by the caller).
#[derive(Debug, Default)]
pub struct Sum {
    totals: std::collections::BTreeMap<String, Quantity>,
}

impl Sum {
    /// Returns false when `value` is not a quantity.
    pub fn add(&mut self, resource: &str, value: &str) -> bool {
        let Some(q) = Quantity::parse(value) else { return false };
        let entry = self.totals.entry(resource.to_string()).or_default();
        match entry.checked_add(q) {
            Some(total) => {
                *entry = total;
                true
            }
            None => false,
        }
    }

    pub fn render(self) -> std::collections::BTreeMap<String, String> {
        self.totals.into_iter().map(|(k, q)| (k, q.render())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(values: &[&str]) -> String {
        let mut s = Sum::default();
        for v in values {
            assert!(s.add("r", v), "{v} should parse");
        }
        s.render().remove("r").unwrap_or_default()
    }

    #[test]
    fn cpu_sums_in_millicores() {
        assert_eq!(sum(&["500m", "1"]), "1500m");
        assert_eq!(sum(&["500m", "500m"]), "1");
        assert_eq!(sum(&["0.5", "250m"]), "750m");
        assert_eq!(sum(&["100m"]), "100m");
        assert_eq!(sum(&["2", "2"]), "4");
        assert_eq!(sum(&["1.5"]), "1500m");
    }

    #[test]
    fn memory_sums_in_binary_units() {
        assert_eq!(sum(&["256Mi", "256Mi"]), "512Mi");
        assert_eq!(sum(&["512Mi", "512Mi"]), "1Gi");
        assert_eq!(sum(&["1Gi", "512Mi"]), "1536Mi");
        assert_eq!(sum(&["1Gi", "1"]), "1073741825");
        assert_eq!(sum(&["1Ki"]), "1Ki");
    }

    #[test]
    fn decimal_suffixes_and_exponents() {
        assert_eq!(sum(&["1G", "1G"]), "2G");
        assert_eq!(sum(&["500M", "500M"]), "1G");
        assert_eq!(sum(&["1e3"]), "1k");
        assert_eq!(sum(&["128974848"]), "128974848");
        assert_eq!(sum(&["129e6"]), "129M");
        assert_eq!(sum(&["0"]), "0");
    }

    #[test]
    fn garbage_is_rejected_not_guessed() {
        for bad in [
            "",
            "abc",
            "1.2.3",
            "5Xi",
            "m",
            ".",
            "1e99",
            "99999999999999999999999999999999",
            "170141183460469231731687303715884105727Ei",
            "999999999999999999999999.999999999999999999E",
        ] {
            assert_eq!(Quantity::parse(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(a in "\\PC{0,40}", b in "[-+]?[0-9.]{0,30}(e-?[0-9]{1,3}|[numkMGTPE]|[KMGTPE]i)?") {
            let mut s = Sum::default();
            let _ = s.add("r", &a);
            let _ = s.add("r", &b);
            let _ = s.add("r", &b);
            let _ = s.render();
        }

        #[test]
        fn rendering_round_trips(millis in 0i64..10_000_000_000, binary in proptest::bool::ANY) {
            let text = if binary { format!("{}Ki", millis) } else { format!("{millis}m") };
            let q = Quantity::parse(&text).expect("valid");
            let back = Quantity::parse(&q.render()).expect("rendered text parses");
            proptest::prop_assert_eq!(q.nanos, back.nanos);
        }
    }
}
