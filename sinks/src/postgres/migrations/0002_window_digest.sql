-- tradeflow schema, version 2: a content digest per window row (issue 13), so that the
-- lake and the database, or two runs, can be compared window by window without reading
-- every column. tradeflow check recomputes it.

-- WindowMetrics::digest (tradeflow-model): FNV-1a 64 over the row's exact values (README,
-- "Analytics: tradeflow check"), its 64 bits stored as a signed bigint. NULL on rows
-- written before this version; the sink fills it in when it next writes the row (a
-- replay of the same input does).
ALTER TABLE window_metrics ADD COLUMN digest bigint;

COMMENT ON COLUMN window_metrics.digest IS 'FNV-1a 64 of the row''s exact values (symbol, window, count, volume units, price units, float bits), as a signed 64-bit integer; tradeflow check compares it';
