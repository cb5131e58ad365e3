{#- Generic tests written here so that the project needs no `dbt deps` package. Each
    returns the offending rows; dbt counts them as failures. -#}

{#- Every row satisfies a SQL boolean expression (rows where it is NULL pass, as with a
    CHECK constraint). -#}
{% test expression_is_true(model, expression, column_name=none) %}
select *
from {{ model }}
where not ({{ expression }})
{% endtest %}

{#- The column lies within [low, high] (SQL expressions over the same row), widened by a
    relative tolerance for doubles; a NULL column passes (not_null checks presence). -#}
{% test between_columns(model, column_name, low, high, relative_tolerance=0) %}
select *
from {{ model }}
where {{ column_name }} is not null
  and ({{ column_name }} < ({{ low }}) * (1 - {{ relative_tolerance }})
       or {{ column_name }} > ({{ high }}) * (1 + {{ relative_tolerance }}))
{% endtest %}

{#- No two rows share the values of these columns (a composite key). -#}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{#- Every row's columns (a composite foreign key) name a row of `to` (same column names
    there unless to_columns says otherwise). -#}
{% test composite_relationship(model, columns, to, to_columns=none) %}
{%- set parent_columns = to_columns or columns -%}
select child.*
from {{ model }} as child
where not exists (
    select 1 from {{ to }} as parent
    where {% for c in columns -%}
        parent.{{ parent_columns[loop.index0] }} = child.{{ c }}{% if not loop.last %} and {% endif %}
    {%- endfor %}
)
{% endtest %}
