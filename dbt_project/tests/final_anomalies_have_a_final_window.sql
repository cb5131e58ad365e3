-- A final anomaly belongs to a final window: the sink writes a window's final anomalies
-- with its final row, in the same transaction (README, "How rows move").
select a.symbol, a.window_start, a.kind
from {{ ref('stg_anomalies') }} as a
join {{ ref('stg_window_metrics') }} as w
    on w.symbol = a.symbol and w.window_start = a.window_start
where a.is_final and not w.is_final
