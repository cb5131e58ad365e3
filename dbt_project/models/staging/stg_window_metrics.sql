-- The sink's window rows, typed and named as the marts use them, with the UTC hour each
-- window starts in. Provisional and final rows alike; the marts choose.
select
    symbol,
    window_start,
    window_end,
    trade_date,
    {{ utc_hour('window_start') }} as window_hour,
    trade_count,
    volume,
    vwap,
    min_price,
    max_price,
    avg_price,
    open,
    close,
    volatility,
    is_final,
    updated_at
from {{ source('tradeflow', 'window_metrics') }}
