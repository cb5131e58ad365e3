-- Reconciliation of the incremental hourly bars with their windows: every bar's exact
-- columns equal an aggregate of the hour's final windows computed now, and every hour
-- with final windows has its bar. A bar left stale by a missed late or corrected window
-- (or rows changed behind the sink's back without a new updated_at) fails here; rerun
-- with --full-refresh --select bars_hourly+ to rebuild. It reads every final window:
-- a test to run on a schedule, not a step of each incremental run.
with fresh as (
    select
        symbol,
        window_hour as bar_start,
        count(*) as window_count,
        sum(trade_count)::bigint as trade_count,
        sum(volume) as volume,
        min(min_price) as min_price,
        max(max_price) as max_price,
        (array_agg(open order by window_start))[1] as open,
        (array_agg(close order by window_start desc))[1] as close
    from {{ ref('stg_window_metrics') }}
    where is_final
    group by symbol, window_hour
),

built as (
    select symbol, bar_start, window_count, trade_count, volume, min_price, max_price, open, close
    from {{ ref('bars_hourly') }}
)

select 'missing or different in bars_hourly' as problem, * from (select * from fresh except select * from built) as m
union all
select 'not backed by the final windows' as problem, * from (select * from built except select * from fresh) as x
