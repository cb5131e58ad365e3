//! A float with total equality, order and hashing by bit pattern.
//!
//! Output columns such as vwap and volatility are `f64` computed deterministically from
//! exact integers, so two runs agree bit for bit. Comparing the bits (not the values)
//! is exactly the "bit-identical" property the pipeline promises, and it gives the
//! `Eq + Ord + Hash` that differential collections need.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

/// An `f64` compared, ordered and hashed by its bit pattern.
#[derive(Copy, Clone, Debug, Default, Serialize, Deserialize)]
pub struct F64(pub f64);

impl PartialEq for F64 {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for F64 {}
impl PartialOrd for F64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for F64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl Hash for F64 {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state)
    }
}
impl From<f64> for F64 {
    fn from(value: f64) -> Self {
        F64(value)
    }
}
