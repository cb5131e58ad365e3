-- The bars assume tumbling windows (tradeflow's default; no --slide): each window of a
-- symbol ends at or before the next one starts. With hopping windows the rows overlap,
-- and summing them into bars would count each trade several times.
select symbol, window_start, window_end, next_start
from (
    select
        symbol,
        window_start,
        window_end,
        lead(window_start) over (partition by symbol order by window_start) as next_start
    from {{ ref('stg_window_metrics') }}
) as w
where next_start < window_end
