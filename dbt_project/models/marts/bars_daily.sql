{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['symbol', 'trade_date'],
        on_schema_change='fail',
        indexes=[{'columns': ['symbol', 'trade_date'], 'unique': true}, {'columns': ['source_updated_at']}]
    )
}}
-- Daily OHLCV bars per symbol (UTC days), rolled up from the hourly bars. Incremental
-- like them: a run rebuilds the (symbol, day) buckets holding an hourly bar whose
-- source_updated_at is newer than the newest this model has seen (less var bars_grace),
-- each from all of its day's hourly bars. It reads bars_hourly (60 times smaller than
-- the window rows), so finding the changed days is cheap.

with
{% if is_incremental() %}
changed as (
    select distinct symbol, trade_date
    from {{ ref('bars_hourly') }}
    where source_updated_at > (
        select coalesce(max(source_updated_at), '-infinity'::timestamptz) - interval '{{ var("bars_grace") }}'
        from {{ this }}
    )
),
{% endif %}

hours as (
    select h.*
    from {{ ref('bars_hourly') }} as h
    {% if is_incremental() %}
    join changed as c on c.symbol = h.symbol and c.trade_date = h.trade_date
    {% endif %}
)

select
    symbol,
    trade_date,
    count(*) as hour_count,
    sum(window_count)::bigint as window_count,
    sum(trade_count)::bigint as trade_count,
    sum(volume) as volume,
    sum(notional order by bar_start) as notional,
    sum(notional order by bar_start) / nullif(sum(volume::float8 order by bar_start), 0) as vwap,
    min(min_price) as min_price,
    max(max_price) as max_price,
    (array_agg(open order by bar_start))[1] as open,
    (array_agg(close order by bar_start desc))[1] as close,
    min(first_window_start) as first_window_start,
    max(last_window_end) as last_window_end,
    max(source_updated_at) as source_updated_at
from hours
group by symbol, trade_date
