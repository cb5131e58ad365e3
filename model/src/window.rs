//! Event-time windows (SPEC 3).
//!
//! Windows of size `W` aligned to the Unix epoch: `window_start = floor(ts / W) * W`.
//! With a hop `S` (S divides W) a trade belongs to every window `[k*S, k*S + W)` that
//! holds `ts`. Tumbling windows are the case S = W.
//!
//! The pipeline aggregates each trade once into its *pane* `[j*S, (j+1)*S)` and adds a
//! pane to the `W/S` windows that contain it, so hopping costs nothing per trade.

use serde::{Deserialize, Serialize};

/// Window size and slide in milliseconds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WindowSpec {
    size: i64,
    slide: i64,
}

/// Why a window size or slide is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The size is zero or negative.
    #[error("window size must be positive, got {0} ms")]
    Size(i64),
    /// The slide does not divide the size, or is not positive.
    #[error(
        "slide of {slide} ms must be positive and divide the window size of {size} ms (e.g. --window 1m --slide 15s)"
    )]
    Slide {
        /// The window size in ms.
        size: i64,
        /// The slide in ms.
        slide: i64,
    },
}

impl WindowSpec {
    /// Tumbling windows of `size` ms.
    pub fn tumbling(size: i64) -> Result<Self, WindowError> {
        Self::hopping(size, size)
    }

    /// Hopping windows of `size` ms starting every `slide` ms.
    pub fn hopping(size: i64, slide: i64) -> Result<Self, WindowError> {
        if size <= 0 {
            return Err(WindowError::Size(size));
        }
        if slide <= 0 || size % slide != 0 {
            return Err(WindowError::Slide { size, slide });
        }
        Ok(WindowSpec { size, slide })
    }

    /// The window size W in ms.
    pub fn size(&self) -> i64 {
        self.size
    }

    /// The slide S in ms (= W for tumbling windows).
    pub fn slide(&self) -> i64 {
        self.slide
    }

    /// Number of windows each trade belongs to (W / S).
    pub fn windows_per_pane(&self) -> i64 {
        self.size / self.slide
    }

    /// Start of the pane `[j*S, (j+1)*S)` holding `ts`.
    pub fn pane_of(&self, ts: i64) -> i64 {
        ts.div_euclid(self.slide) * self.slide
    }

    /// Starts of the windows that contain the pane starting at `pane_start`, oldest first.
    pub fn windows_of_pane(&self, pane_start: i64) -> impl Iterator<Item = i64> + use<> {
        let slide = self.slide;
        let first = pane_start - self.size + slide;
        (0..self.windows_per_pane()).map(move |k| first + k * slide)
    }

    /// End (exclusive) of the window starting at `start`.
    pub fn end_of(&self, start: i64) -> i64 {
        start + self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_windows_align_to_the_epoch() {
        let w = WindowSpec::tumbling(60_000).unwrap();
        assert_eq!(w.pane_of(1_700_000_000_123), 1_699_999_980_000);
        assert_eq!(w.windows_of_pane(1_699_999_980_000).collect::<Vec<_>>(), vec![1_699_999_980_000]);
        assert_eq!(w.end_of(0), 60_000);
    }

    #[test]
    fn hopping_windows_cover_every_start_that_holds_the_trade() {
        let w = WindowSpec::hopping(60_000, 20_000).unwrap();
        let ts = 130_000;
        let starts: Vec<i64> = w.windows_of_pane(w.pane_of(ts)).collect();
        assert_eq!(starts, vec![80_000, 100_000, 120_000]);
        for s in starts {
            assert!(s <= ts && ts < w.end_of(s));
        }
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(WindowSpec::tumbling(0).is_err());
        assert!(WindowSpec::hopping(60_000, 7_000).is_err());
        assert!(WindowSpec::hopping(60_000, 0).is_err());
        assert!(WindowSpec::hopping(60_000, 120_000).is_err());
    }
}
