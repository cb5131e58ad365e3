{{ config(materialized='view') }}
-- The fact table of window metrics, one row per (symbol, window), provisional and final:
-- the columns of the sink's fct_trades view (so the seed's queries run on either) and the
-- UTC hour of the window. A view, so it answers as the sink's view does, live.
select
    symbol,
    trade_date,
    window_start,
    window_end,
    window_hour,
    vwap,
    volatility,
    volume,
    trade_count,
    min_price,
    max_price,
    avg_price,
    open,
    close,
    is_final,
    updated_at
from {{ ref('stg_window_metrics') }}
