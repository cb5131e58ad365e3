-- One row per UTC calendar day from the first to the last trade_date of window_metrics
-- (min and max come from the sink's (trade_date, symbol) index).
with bounds as (
    select min(trade_date) as first_day, max(trade_date) as last_day
    from {{ ref('stg_window_metrics') }}
)

select
    d::date as date_day,
    extract(isoyear from d)::int as iso_year,
    extract(week from d)::int as iso_week,
    extract(year from d)::int as year,
    extract(quarter from d)::int as quarter,
    extract(month from d)::int as month,
    trim(to_char(d, 'Month')) as month_name,
    extract(day from d)::int as day_of_month,
    extract(isodow from d)::int as day_of_week,
    trim(to_char(d, 'Day')) as day_name,
    extract(isodow from d) in (6, 7) as is_weekend
from bounds
cross join lateral generate_series(bounds.first_day, bounds.last_day, interval '1 day') as d
where bounds.first_day is not null
