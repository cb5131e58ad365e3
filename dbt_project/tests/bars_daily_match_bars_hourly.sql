-- Reconciliation of the incremental daily bars with the hourly bars they roll up.
with fresh as (
    select
        symbol,
        trade_date,
        count(*) as hour_count,
        sum(window_count)::bigint as window_count,
        sum(trade_count)::bigint as trade_count,
        sum(volume) as volume,
        min(min_price) as min_price,
        max(max_price) as max_price,
        (array_agg(open order by bar_start))[1] as open,
        (array_agg(close order by bar_start desc))[1] as close
    from {{ ref('bars_hourly') }}
    group by symbol, trade_date
),

built as (
    select symbol, trade_date, hour_count, window_count, trade_count, volume, min_price, max_price, open, close
    from {{ ref('bars_daily') }}
)

select 'missing or different in bars_daily' as problem, * from (select * from fresh except select * from built) as m
union all
select 'not backed by bars_hourly' as problem, * from (select * from built except select * from fresh) as x
