-- Final windows are never newer than the watermark (SPEC 6).
--
-- The sink stores no event-time watermark, but it shows in the rows: a window is final
-- exactly when the pipeline's watermark (one, the minimum over partitions and workers)
-- has passed its end, so every final window ends at or before the watermark and every
-- provisional one after it. A provisional window ending at or before the newest final
-- window's end is therefore one the watermark passed without its final row arriving:
-- a lost write, or a run stopped before it finalised. Rows written within the last
-- var('watermark_grace') are left alone, since the sink's per-process writers commit
-- one run's rows a moment apart.
with newest_final as (
    select max(window_end) as window_end
    from {{ ref('stg_window_metrics') }}
    where is_final
)

select w.symbol, w.window_start, w.window_end, w.updated_at, n.window_end as newest_final_end
from {{ ref('stg_window_metrics') }} as w
cross join newest_final as n
where not w.is_final
  and w.window_end <= n.window_end
  and w.updated_at < now() - interval '{{ var("watermark_grace") }}'
