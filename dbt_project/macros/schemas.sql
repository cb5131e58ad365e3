{#- The schema the sink writes to: tradeflow migrates into the connection's search_path,
    normally public; TRADEFLOW_SOURCE_SCHEMA names another. -#}
{% macro source_schema() -%}
  {{ return(env_var('TRADEFLOW_SOURCE_SCHEMA', 'public')) }}
{%- endmacro %}

{#- on-run-start: refuse to build into the sink's schema, where the models would replace
    the sink's own fct_trades view (migration 0001) with the mart. -#}
{% macro check_schemas() -%}
  {%- if target.schema | lower == source_schema() | lower -%}
    {{ exceptions.raise_compiler_error(
        "the models' schema (TRADEFLOW_DBT_SCHEMA=" ~ target.schema ~ ") is the schema tradeflow writes to "
        ~ "(TRADEFLOW_SOURCE_SCHEMA=" ~ source_schema() ~ "): building there would replace the sink's fct_trades "
        ~ "view; fix: set TRADEFLOW_DBT_SCHEMA to another schema (default analytics)") }}
  {%- endif -%}
  select 1
{%- endmacro %}

{#- The UTC hour holding a timestamptz, as a timestamptz (whatever the session's TimeZone). -#}
{% macro utc_hour(column) -%}
  (date_trunc('hour', ({{ column }}) at time zone 'UTC') at time zone 'UTC')
{%- endmacro %}

{#- The UTC date of a timestamptz. -#}
{% macro utc_date(column) -%}
  ((({{ column }}) at time zone 'UTC')::date)
{%- endmacro %}
