-- tradeflow schema, version 3: checkpoints of runs without a lake (issue 11).
--
-- A run with --no-lake and --postgres keeps its checkpoints here, under the same keys a
-- lake keeps them (`_checkpoints/<job>/manifest-p<process>.json`, and each component's
-- parts under `_checkpoints/<job>/parts/`). The manifest is written after the parts it
-- names and after the sink has committed every epoch it covers, so it is never ahead of
-- the rows. Inspect: SELECT key, length(bytes), written_at FROM tradeflow_checkpoints;
-- reset a job: DELETE FROM tradeflow_checkpoints WHERE starts_with(key, '_checkpoints/<job>/')
-- (or run it with --from-scratch).
CREATE TABLE IF NOT EXISTS tradeflow_checkpoints (
    key        text        PRIMARY KEY,
    bytes      bytea       NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE tradeflow_checkpoints IS 'checkpoints of tradeflow runs without a lake: manifests (JSON) and parts (binary), keyed as in a lake''s _checkpoints/';
