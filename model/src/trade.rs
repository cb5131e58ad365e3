//! Trades.

use crate::{Price, Qty, Symbol};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// An accepted trade (SPEC 2), after validation and the lateness check.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Trade {
    /// The instrument.
    pub symbol: Symbol,
    /// Event time in ms since the Unix epoch, UTC.
    pub ts: i64,
    /// Price in 10^-8 units, > 0.
    pub price: Price,
    /// Volume in 10^-8 units, >= 0.
    pub volume: Qty,
    /// Trade conditions, if the record had a list of strings.
    pub conditions: Conditions,
}

impl Trade {
    /// A trade without conditions.
    pub fn new(symbol: Symbol, ts: i64, price: Price, volume: Qty) -> Trade {
        Trade { symbol, ts, price, volume, conditions: Conditions::none() }
    }
}

/// A trade's optional list of condition codes, kept as the JSON text of the array as it
/// arrived (`["1","12"]`, spacing and escapes included) so that a typical list is stored
/// inline without allocating, and decoded only where it is written out. Compare decoded
/// lists, not texts: the same list can arrive spelled differently.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Conditions(CompactString);

impl Conditions {
    /// No conditions (absent, null, or not a list of strings).
    pub fn none() -> Self {
        Conditions(CompactString::default())
    }

    /// Conditions from already-validated JSON text of an array of strings. The caller
    /// guarantees the text is a JSON array of strings (the parser checks it).
    pub fn from_json_unchecked(json: &str) -> Self {
        Conditions(CompactString::new(json))
    }

    /// Conditions from a list of strings.
    pub fn from_list<S: AsRef<str>>(list: &[S]) -> Self {
        let list: Vec<&str> = list.iter().map(|s| s.as_ref()).collect();
        let json = serde_json::to_string(&list).expect("a list of strings always serializes");
        Conditions(CompactString::new(json))
    }

    /// True when the trade had no list of conditions.
    pub fn is_none(&self) -> bool {
        self.0.is_empty()
    }

    /// The JSON text of the list, or `None`.
    pub fn as_json(&self) -> Option<&str> {
        if self.0.is_empty() { None } else { Some(self.0.as_str()) }
    }

    /// Calls `f` with each condition in order; returns whether the list is present.
    /// Lists without escapes (the usual case) are read without allocating.
    pub fn for_each(&self, mut f: impl FnMut(&str)) -> bool {
        let Some(json) = self.as_json() else { return false };
        if json.contains('\\') {
            for c in self.decode().unwrap_or_default() {
                f(&c);
            }
            return true;
        }
        // Without escapes every `"` delimits a string: elements are between pairs.
        let mut parts = json.split('"');
        parts.next();
        while let (Some(element), Some(_)) = (parts.next(), parts.next()) {
            f(element);
        }
        true
    }

    /// The list of conditions, or `None` when absent.
    pub fn decode(&self) -> Option<Vec<String>> {
        self.as_json().map(|json| serde_json::from_str(json).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_round_trip() {
        let c = Conditions::from_list(&["1", "12", "with \"quote\""]);
        assert_eq!(c.decode().unwrap(), vec!["1", "12", "with \"quote\""]);
        assert!(Conditions::none().decode().is_none());
        assert_eq!(Conditions::from_json_unchecked("[ \"a\" , \"\\u0062\" ]").decode().unwrap(), vec!["a", "b"]);
        assert_eq!(Conditions::from_list::<&str>(&[]).decode().unwrap(), Vec::<String>::new());
        for json in ["[]", "[\"1\",\"12\"]", "[ \"a b\" , \"\" ,\"c\"]", "[\"x\\\"y\",\"\\u0041\"]"] {
            let c = Conditions::from_json_unchecked(json);
            let mut seen = Vec::new();
            assert!(c.for_each(|s| seen.push(s.to_owned())));
            assert_eq!(Some(seen), c.decode(), "{json}");
        }
        assert!(!Conditions::none().for_each(|_| panic!("no conditions")));
    }
}
