-- tradeflow schema, version 1: live window metrics and anomalies (SPEC 4, 5, 7), the
-- seed's fct_trades view, and the sink's progress.

-- One row per (symbol, window): provisional (is_final = false) while trades can still
-- change it, then final. Prices and volume are exact decimals of 10^-8; vwap, averages
-- and volatility are the pipeline's doubles, bit for bit. fillfactor leaves room on each
-- page so that the many updates of a live row are HOT (no index writes).
CREATE TABLE window_metrics (
    symbol       text             NOT NULL,
    window_start timestamptz      NOT NULL,
    window_end   timestamptz      NOT NULL,
    trade_date   date             NOT NULL GENERATED ALWAYS AS ((window_start AT TIME ZONE 'UTC')::date) STORED,
    trade_count  bigint           NOT NULL,
    volume       numeric          NOT NULL,
    vwap         double precision,
    min_price    numeric(18, 8)   NOT NULL,
    max_price    numeric(18, 8)   NOT NULL,
    avg_price    double precision NOT NULL,
    open         numeric(18, 8)   NOT NULL,
    close        numeric(18, 8)   NOT NULL,
    volatility   double precision,
    is_final     boolean          NOT NULL,
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, window_start)
) WITH (fillfactor = 80);

COMMENT ON TABLE window_metrics IS 'tradeflow: metrics per (symbol, window); provisional rows are upserted as trades arrive, final rows (is_final) never change';
COMMENT ON COLUMN window_metrics.trade_date IS 'UTC date of window_start';
COMMENT ON COLUMN window_metrics.volume IS 'sum of trade volumes, exact';
COMMENT ON COLUMN window_metrics.vwap IS 'sum(p*v) / sum(v); NULL when the volume is 0';
COMMENT ON COLUMN window_metrics.volatility IS 'sample standard deviation of log vwap returns over the last K windows; NULL with fewer than 2 returns';

-- The seed's daily query filters on trade_date; the dashboard reads the latest windows
-- across symbols (the primary key serves one symbol's latest windows, read backwards).
CREATE INDEX window_metrics_trade_date ON window_metrics (trade_date, symbol);
CREATE INDEX window_metrics_window_start ON window_metrics (window_start DESC);

-- One row per (symbol, window, kind). A retracted provisional anomaly is deleted.
CREATE TABLE anomalies (
    symbol       text             NOT NULL,
    window_start timestamptz      NOT NULL,
    window_end   timestamptz      NOT NULL,
    kind         text             NOT NULL CHECK (kind IN ('volume_spike', 'price_jump')),
    severity     double precision NOT NULL,
    detected_at  timestamptz      NOT NULL,
    observed     double precision NOT NULL,
    baseline     double precision NOT NULL,
    is_final     boolean          NOT NULL,
    PRIMARY KEY (symbol, window_start, kind)
);

COMMENT ON TABLE anomalies IS 'tradeflow: volume spikes and price jumps per (symbol, window); provisional ones may be deleted when late trades retract them';
COMMENT ON COLUMN anomalies.detected_at IS '= window_end, so that replays reproduce it';
COMMENT ON COLUMN anomalies.observed IS 'the window volume (volume_spike) or log return r (price_jump)';
COMMENT ON COLUMN anomalies.baseline IS 'the baseline volume (volume_spike) or volatility (price_jump)';

-- The seed's recent-anomalies query filters on detected_at and sorts by severity.
CREATE INDEX anomalies_detected_at ON anomalies (detected_at DESC, severity DESC);

-- The seed's fact table, as a view.
CREATE VIEW fct_trades AS
SELECT symbol, trade_date, window_start, window_end, vwap, volatility, volume, trade_count,
       min_price, max_price, avg_price, open, close, is_final
FROM window_metrics;

-- Each sink instance (one writer per process of a run) records the epoch (processing
-- time) up to which everything it was handed is committed.
CREATE TABLE sink_progress (
    run_id       text        NOT NULL,
    process      integer     NOT NULL,
    epoch        timestamptz NOT NULL,
    committed_at timestamptz NOT NULL,
    transactions bigint      NOT NULL,
    rows_written bigint      NOT NULL,
    PRIMARY KEY (run_id, process)
);

COMMENT ON TABLE sink_progress IS 'tradeflow: per run and process, the processing epoch up to which every change is committed';
