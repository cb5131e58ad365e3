//! The pipeline watermark: the minimum of every source instance's report.
//!
//! Each source instance (one source on one worker) promises, with a
//! [`WatermarkReport`], that what it emits at later epochs has event time `>= low`.
//! Reports travel (broadcast) beside the data, at the epoch they were made. An operator
//! that has applied everything up to epoch `t` and every report up to `t` knows that no
//! trade below `min(low)` will ever reach it: windows ending at or before that are final.

use tradeflow_model::WatermarkReport;

/// The minimum over all reporters of their latest report.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct GlobalWatermark {
    lows: Vec<i64>,
    min: i64,
}

impl GlobalWatermark {
    /// A watermark over `reporters` reporters, none of which has reported (so `i64::MIN`).
    pub fn new(reporters: usize) -> Self {
        GlobalWatermark { lows: vec![i64::MIN; reporters], min: if reporters == 0 { i64::MAX } else { i64::MIN } }
    }

    /// Applies a report; reports only ever raise a reporter's bound.
    pub fn observe(&mut self, report: &WatermarkReport) {
        let Some(low) = self.lows.get_mut(report.reporter as usize) else {
            return;
        };
        if report.low > *low {
            let was_min = *low == self.min;
            *low = report.low;
            if was_min {
                self.min = self.lows.iter().copied().min().unwrap_or(i64::MAX);
            }
        }
    }

    /// The current pipeline watermark (`i64::MAX` once every reporter is done).
    pub fn get(&self) -> i64 {
        self.min
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_the_minimum_of_the_latest_reports() {
        let mut wm = GlobalWatermark::new(2);
        assert_eq!(wm.get(), i64::MIN);
        wm.observe(&WatermarkReport { reporter: 0, low: 100, stop: false });
        assert_eq!(wm.get(), i64::MIN);
        wm.observe(&WatermarkReport { reporter: 1, low: 50, stop: false });
        assert_eq!(wm.get(), 50);
        wm.observe(&WatermarkReport { reporter: 1, low: 40, stop: false }); // never goes back
        assert_eq!(wm.get(), 50);
        wm.observe(&WatermarkReport { reporter: 1, low: i64::MAX, stop: false });
        assert_eq!(wm.get(), 100);
        wm.observe(&WatermarkReport { reporter: 0, low: i64::MAX, stop: false });
        assert_eq!(wm.get(), i64::MAX);
    }
}
