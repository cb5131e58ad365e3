//! The dashboard's sink operator: each worker hands the changes of its share of the
//! metrics and anomalies collections to the process's [`Dashboard`].
//!
//! The window analytics operator routes every symbol to one worker, and the rows are
//! arranged there ([`tradeflow_operators::rows`]), so each worker sees all changes of its
//! symbols and the dashboard of a process shows exactly the symbols of that process's
//! workers (with `-n N` processes, each serves its own). The changes come as the
//! arrangement's batches, in key order within a batch: they are applied in epoch order,
//! once per activation (one lock), and published by the next tick. Expiries are not
//! passed on ([`tradeflow_operators::rows::kept`]): a final window keeps its point.

use super::state::Dashboard;
use differential_dataflow::VecCollection;
use std::sync::Arc;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use tradeflow_model::{Anomaly, Time, WindowMetrics};

/// Feeds `metrics` and `anomalies` (the arranged rows without expiries, on the worker of
/// their symbol) to `dashboard`.
pub fn feed_dashboard<'scope>(
    metrics: VecCollection<'scope, Time, WindowMetrics>,
    anomalies: VecCollection<'scope, Time, Anomaly>,
    dashboard: Arc<Dashboard>,
) {
    let mut builder = OperatorBuilder::new("Dashboard".to_owned(), metrics.inner.scope());
    let mut metrics_in = builder.new_input(metrics.inner, Pipeline);
    let mut anomalies_in = builder.new_input(anomalies.inner, Pipeline);
    builder.build(move |_| {
        let mut rows = Vec::new();
        let mut marks = Vec::new();
        move |_frontiers| {
            metrics_in.for_each(|_, batch| rows.append(batch));
            anomalies_in.for_each(|_, batch| marks.append(batch));
            if !rows.is_empty() || !marks.is_empty() {
                // `apply` needs epoch order, which `kept` sends; a stable sort keeps it
                // whatever the order of messages, each epoch's updates together.
                rows.sort_by_key(|(_, time, _)| *time);
                marks.sort_by_key(|(_, time, _)| *time);
                dashboard.apply(&rows, &marks);
                rows.clear();
                marks.clear();
            }
        }
    });
}
