-- The sink's anomaly rows, with the UTC date and hour of their window.
select
    symbol,
    window_start,
    window_end,
    {{ utc_date('window_start') }} as trade_date,
    {{ utc_hour('window_start') }} as window_hour,
    kind,
    severity,
    detected_at,
    observed,
    baseline,
    is_final
from {{ source('tradeflow', 'anomalies') }}
