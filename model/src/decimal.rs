//! Exact decimal reading of JSON numbers into 10^-8 units.
//!
//! SPEC 4: "the JSON number's decimal value is rounded half-even to 8 places". The value
//! is read from the number's text, never through an `f64`, so `187.12` is exactly
//! 18 712 000 000 units and `0.000000015` rounds to 2 units (1.5 -> 2) while
//! `0.000000025` rounds to 2 units too (2.5 -> 2, half to even).

/// A JSON number read exactly and rounded half-even to 8 decimal places.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Decimal8 {
    /// The exact value is < 0 (`-0` and `-0.0` are not negative).
    pub negative: bool,
    /// The exact value is 0.
    pub zero: bool,
    /// The magnitude rounded half-even to 10^-8 units; `None` when it is 10^19 units or
    /// more (far beyond any valid price or volume).
    pub units: Option<u64>,
}

/// Reads `text` as a JSON number (RFC 8259 grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`).
/// Returns `None` when `text` is not exactly one JSON number.
pub fn parse_json_number(text: &[u8]) -> Option<Decimal8> {
    let mut i = 0;
    let negative_sign = text.first() == Some(&b'-');
    if negative_sign {
        i += 1;
    }
    // Integer part.
    let int_start = i;
    match text.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while matches!(text.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
        }
        _ => return None,
    }
    let int_digits = &text[int_start..i];
    // Fraction.
    let mut frac_digits: &[u8] = &[];
    if text.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while matches!(text.get(i), Some(b'0'..=b'9')) {
            i += 1;
        }
        if i == start {
            return None;
        }
        frac_digits = &text[start..i];
    }
    // Exponent, saturated: anything beyond +-10^9 is equally out of range.
    let mut exponent: i64 = 0;
    if matches!(text.get(i), Some(b'e' | b'E')) {
        i += 1;
        let mut exp_negative = false;
        match text.get(i) {
            Some(b'+') => i += 1,
            Some(b'-') => {
                exp_negative = true;
                i += 1
            }
            _ => {}
        }
        let start = i;
        while let Some(d @ b'0'..=b'9') = text.get(i) {
            exponent = (exponent * 10 + (d - b'0') as i64).min(1_000_000_000);
            i += 1;
        }
        if i == start {
            return None;
        }
        if exp_negative {
            exponent = -exponent;
        }
    }
    if i != text.len() {
        return None;
    }
    Some(round_digits(negative_sign, int_digits, frac_digits, exponent))
}

/// Rounds the decimal `int.frac × 10^exponent` half-even to 8 places.
fn round_digits(negative_sign: bool, int_digits: &[u8], frac_digits: &[u8], exponent: i64) -> Decimal8 {
    // All digits as one integer D, with value = D × 10^(exponent - frac_len); scaled by
    // 10^8 the value is D × 10^shift.
    let all = int_digits.iter().chain(frac_digits.iter()).copied();
    let significant: Vec<u8> = all.skip_while(|d| *d == b'0').collect();
    if significant.is_empty() {
        return Decimal8 { negative: false, zero: true, units: Some(0) };
    }
    let shift = exponent - frac_digits.len() as i64 + 8;
    let len = significant.len() as i64;
    let kept_len = len + shift; // digits left of the rounding point
    if kept_len > 19 {
        return Decimal8 { negative: negative_sign, zero: false, units: None };
    }
    let units = if shift >= 0 {
        let mut value: u64 = 0;
        for d in &significant {
            value = value * 10 + (d - b'0') as u64;
        }
        value.checked_mul(10u64.pow(shift as u32))
    } else {
        let kept = kept_len.max(0) as usize;
        let mut value: u64 = 0;
        for d in &significant[..kept] {
            value = value * 10 + (d - b'0') as u64;
        }
        // First dropped digit (an implied 0 when the number starts right of it).
        let (first, rest) =
            if kept_len >= 0 { (significant[kept], &significant[kept + 1..]) } else { (b'0', &significant[..]) };
        let round_up = match first {
            b'6'..=b'9' => true,
            b'5' => rest.iter().any(|d| *d != b'0') || value % 2 == 1,
            _ => false,
        };
        if round_up { value.checked_add(1) } else { Some(value) }
    };
    Decimal8 { negative: negative_sign, zero: false, units }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(text: &str) -> Option<u64> {
        parse_json_number(text.as_bytes()).unwrap().units
    }

    #[test]
    fn reads_exact_values() {
        assert_eq!(units("187.12"), Some(18_712_000_000));
        assert_eq!(units("100"), Some(10_000_000_000));
        assert_eq!(units("0.00000001"), Some(1));
        assert_eq!(units("1e2"), Some(10_000_000_000));
        assert_eq!(units("1.5E-3"), Some(150_000));
        assert_eq!(units("0"), Some(0));
        assert_eq!(units("9999999999.99999999"), Some(999_999_999_999_999_999));
    }

    #[test]
    fn rounds_half_even_at_eight_places() {
        assert_eq!(units("0.000000015"), Some(2)); // 1.5 -> 2
        assert_eq!(units("0.000000025"), Some(2)); // 2.5 -> 2
        assert_eq!(units("0.0000000250001"), Some(3)); // above half
        assert_eq!(units("0.000000005"), Some(0)); // 0.5 -> 0
        assert_eq!(units("1e-9"), Some(0));
        assert_eq!(units("1e-999999999999"), Some(0));
        assert_eq!(units("187.123456785"), Some(18_712_345_678)); // ...78.5 -> 78
        assert_eq!(units("187.123456795"), Some(18_712_345_680)); // ...79.5 -> 80
        assert_eq!(units("9999999999.999999995"), Some(1_000_000_000_000_000_000));
    }

    #[test]
    fn signs_and_zero() {
        let d = parse_json_number(b"-0").unwrap();
        assert!(d.zero && !d.negative);
        let d = parse_json_number(b"-0.0e5").unwrap();
        assert!(d.zero && !d.negative);
        let d = parse_json_number(b"-1e-9").unwrap();
        assert!(d.negative && !d.zero && d.units == Some(0));
    }

    #[test]
    fn huge_values_have_no_units() {
        assert_eq!(units("1e400"), None);
        assert_eq!(units("12345678901234567890"), None);
        assert_eq!(units(&"9".repeat(500)), None);
        assert_eq!(units("10000000000"), Some(1_000_000_000_000_000_000));
    }

    #[test]
    fn rejects_non_json_numbers() {
        for bad in ["", "-", "01", "1.", ".5", "+1", "1e", "1e+", "NaN", "Infinity", "0x10", "1 ", " 1", "1.5.2", "--1"]
        {
            assert!(parse_json_number(bad.as_bytes()).is_none(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_integer_arithmetic(whole in 0u64..10_000_000_000, frac in 0u64..1_000_000_000_000) {
            // whole.frac with 12 fractional digits, rounded half-even to 8 places.
            let text = format!("{whole}.{frac:012}");
            let exact = whole as u128 * 1_000_000_000_000 + frac as u128; // 10^-12 units
            let (q, r) = (exact / 10_000, exact % 10_000);
            let expected = if r > 5_000 || (r == 5_000 && q % 2 == 1) { q + 1 } else { q };
            proptest::prop_assert_eq!(units(&text), Some(expected as u64));
        }
    }
}
