-- One row per symbol that has a window row (provisional or final): its venue prefix, the
-- ticker after it, its asset class, and when it was first and last seen.
with seen as (
    select
        symbol,
        min(window_start) as first_seen_at,
        max(window_end) as last_seen_at,
        min(trade_date) as first_trade_date,
        max(trade_date) as last_trade_date,
        count(*) as window_count,
        sum(trade_count)::bigint as trade_count
    from {{ ref('stg_window_metrics') }}
    group by symbol
),

parsed as (
    select
        *,
        -- Finnhub's `VENUE:TICKER`; the first colon separates them, as in the simulator.
        case when strpos(symbol, ':') > 0 then upper(split_part(symbol, ':', 1)) end as venue,
        case when strpos(symbol, ':') > 0 then substr(symbol, strpos(symbol, ':') + 1) else symbol end as ticker
    from seen
)

select
    p.symbol,
    p.venue,
    p.ticker,
    coalesce(v.asset_class, 'stock') as asset_class,
    p.first_seen_at,
    p.last_seen_at,
    p.first_trade_date,
    p.last_trade_date,
    p.window_count,
    p.trade_count
from parsed as p
left join {{ ref('dim_venue') }} as v on v.venue = p.venue
