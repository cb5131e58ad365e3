{{ config(materialized='view') }}
-- One row per anomaly (symbol, window, kind), provisional and final, with its window's
-- VWAP and volume for context.
select
    a.symbol,
    a.window_start,
    a.window_end,
    a.trade_date,
    a.window_hour,
    a.kind,
    a.severity,
    a.detected_at,
    a.observed,
    a.baseline,
    a.is_final,
    w.vwap as window_vwap,
    w.volume as window_volume
from {{ ref('stg_anomalies') }} as a
left join {{ ref('stg_window_metrics') }} as w
    on w.symbol = a.symbol and w.window_start = a.window_start
