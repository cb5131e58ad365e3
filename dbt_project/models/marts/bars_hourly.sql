{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['symbol', 'bar_start'],
        on_schema_change='fail',
        indexes=[{'columns': ['symbol', 'bar_start'], 'unique': true}, {'columns': ['source_updated_at']}]
    )
}}
-- Hourly OHLCV bars per symbol (UTC hours), rolled up from the FINAL window rows of
-- the hour. Incremental: a run re-aggregates only the (symbol, hour) buckets that hold
-- a final window written since the newest window the previous run saw (its
-- source_updated_at, less var bars_grace), always from all of the bucket's final windows,
-- and replaces those bars (delete+insert on the key). So a window finalised late, a
-- window corrected by a replay with more trades (the sink rewrites it with a new
-- updated_at), or the next windows of an hour already built, all rebuild exactly their
-- hour. Windows are assigned to the hour their window_start falls in; tumbling windows
-- (the default) are assumed: with --slide the windows overlap and the sums double count.
{%- set scan_from = var('bars_scan_from') %}

with
{% if is_incremental() %}
changed as (
    select distinct symbol, window_hour
    from {{ ref('stg_window_metrics') }}
    where is_final
      and updated_at > (
          select coalesce(max(source_updated_at), '-infinity'::timestamptz) - interval '{{ var("bars_grace") }}'
          from {{ this }}
      )
      {% if scan_from %}and window_start >= '{{ scan_from }}'::timestamptz{% endif %}
),
{% endif %}

windows as (
    select w.*
    from {{ ref('stg_window_metrics') }} as w
    {% if is_incremental() %}
    join changed as c on c.symbol = w.symbol and c.window_hour = w.window_hour
    {% endif %}
    where w.is_final
)

select
    symbol,
    window_hour as bar_start,
    window_hour + interval '1 hour' as bar_end,
    {{ utc_date('window_hour') }} as trade_date,
    count(*) as window_count,
    sum(trade_count)::bigint as trade_count,
    sum(volume) as volume,
    -- Σ vwap·volume over the windows: Σ p·v up to the rounding of each window's vwap.
    -- Ordered sums, so that a bar is bit-identical however it was (re)built.
    sum(vwap * volume::float8 order by window_start) as notional,
    sum(vwap * volume::float8 order by window_start) / nullif(sum(volume::float8 order by window_start), 0) as vwap,
    min(min_price) as min_price,
    max(max_price) as max_price,
    (array_agg(open order by window_start))[1] as open,
    (array_agg(close order by window_start desc))[1] as close,
    min(window_start) as first_window_start,
    max(window_end) as last_window_end,
    max(updated_at) as source_updated_at
from windows
group by symbol, window_hour
