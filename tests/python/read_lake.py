"""Reads a tradeflow lake with a real reader and prints its rows as canonical JSON.

Usage: read_lake.py LAKE_DIR pyarrow|duckdb

Both readers read every dataset with Hive partitioning, as SPEC 7 promises a data
engineer can: pyarrow.dataset with partitioning="hive", DuckDB read_parquet(...,
hive_partitioning=true). The output is one JSON object:

  trades:         [symbol, date, ts_ms, price, volume, conditions]
  window_metrics: [symbol, date, window_start_ms, window_end_ms, trade_count, volume,
                   vwap, min_price, max_price, avg_price, open, close, volatility]
  anomalies:      [symbol, date, window_start_ms, window_end_ms, kind, severity,
                   detected_at_ms, observed, baseline]
  dead_letter:    [date, source, position, element, reason, payload]

Decimals are exact strings without trailing zeros ("187.12", "0"); floats are repr()
strings (shortest round-trip) or null; partition values are the decoded strings.
"""

import decimal
import json
import os
import sys


def dec(value):
    """An exact decimal as a string without trailing zeros."""
    if value is None:
        return None
    text = format(decimal.Decimal(value).normalize(), "f")
    return "0" if text in ("-0", "0") else text


def flt(value):
    return None if value is None else repr(float(value))


def part(value):
    """A partition value as a string (readers may infer dates or numbers)."""
    return None if value is None else str(value)


def read_pyarrow(root):
    import pyarrow as pa
    import pyarrow.dataset as ds

    def table(name):
        path = os.path.join(root, name)
        if not os.path.isdir(path):
            return None
        return ds.dataset(path, format="parquet", partitioning="hive").to_table()

    def ms(column):
        return column.cast(pa.int64()).to_pylist()

    out = {"trades": [], "window_metrics": [], "anomalies": [], "dead_letter": []}
    t = table("trades")
    if t is not None:
        cols = [t.column("symbol").to_pylist(), t.column("date").to_pylist(), ms(t.column("ts")),
                t.column("price").to_pylist(), t.column("volume").to_pylist(), t.column("conditions").to_pylist()]
        for s, d, ts, p, v, c in zip(*cols):
            out["trades"].append([part(s), part(d), ts, dec(p), dec(v), c])
    t = table("window_metrics")
    if t is not None:
        names = ["symbol", "date", "window_start", "window_end", "trade_count", "volume", "vwap", "min_price",
                 "max_price", "avg_price", "open", "close", "volatility"]
        cols = {n: (ms(t.column(n)) if n in ("window_start", "window_end") else t.column(n).to_pylist()) for n in names}
        for i in range(t.num_rows):
            r = {n: cols[n][i] for n in names}
            out["window_metrics"].append([
                part(r["symbol"]), part(r["date"]), r["window_start"], r["window_end"], r["trade_count"],
                dec(r["volume"]), flt(r["vwap"]), dec(r["min_price"]), dec(r["max_price"]), flt(r["avg_price"]),
                dec(r["open"]), dec(r["close"]), flt(r["volatility"])])
    t = table("anomalies")
    if t is not None:
        names = ["symbol", "date", "window_start", "window_end", "kind", "severity", "detected_at", "observed",
                 "baseline"]
        ts_names = ("window_start", "window_end", "detected_at")
        cols = {n: (ms(t.column(n)) if n in ts_names else t.column(n).to_pylist()) for n in names}
        for i in range(t.num_rows):
            r = {n: cols[n][i] for n in names}
            out["anomalies"].append([
                part(r["symbol"]), part(r["date"]), r["window_start"], r["window_end"], r["kind"],
                flt(r["severity"]), r["detected_at"], flt(r["observed"]), flt(r["baseline"])])
    t = table("dead_letter")
    if t is not None:
        names = ["date", "source", "position", "element", "reason", "payload"]
        cols = [t.column(n).to_pylist() for n in names]
        for d, source, position, element, reason, payload in zip(*cols):
            out["dead_letter"].append([part(d), source, position, element, reason, payload])
    return out


def read_duckdb(root):
    import duckdb

    con = duckdb.connect()

    def query(name, select):
        path = os.path.join(root, name)
        if not os.path.isdir(path):
            return []
        glob = os.path.join(path, "**", "*.parquet").replace("'", "''")
        return con.execute(f"SELECT {select} FROM read_parquet('{glob}', hive_partitioning=true)").fetchall()

    out = {"trades": [], "window_metrics": [], "anomalies": [], "dead_letter": []}
    for s, d, ts, p, v, c in query(
            "trades", "CAST(symbol AS VARCHAR), CAST(date AS VARCHAR), epoch_ms(ts), price, volume, conditions"):
        out["trades"].append([s, d, ts, dec(p), dec(v), c])
    for r in query("window_metrics",
                   "CAST(symbol AS VARCHAR), CAST(date AS VARCHAR), epoch_ms(window_start), epoch_ms(window_end), "
                   "trade_count, volume, vwap, min_price, max_price, avg_price, open, close, volatility"):
        out["window_metrics"].append([r[0], r[1], r[2], r[3], r[4], dec(r[5]), flt(r[6]), dec(r[7]), dec(r[8]),
                                      flt(r[9]), dec(r[10]), dec(r[11]), flt(r[12])])
    for r in query("anomalies",
                   "CAST(symbol AS VARCHAR), CAST(date AS VARCHAR), epoch_ms(window_start), epoch_ms(window_end), "
                   "kind, severity, epoch_ms(detected_at), observed, baseline"):
        out["anomalies"].append([r[0], r[1], r[2], r[3], r[4], flt(r[5]), r[6], flt(r[7]), flt(r[8])])
    for r in query("dead_letter", "CAST(date AS VARCHAR), source, position, element, reason, payload"):
        out["dead_letter"].append(list(r))
    return out


def main():
    root, reader = sys.argv[1], sys.argv[2]
    out = {"pyarrow": read_pyarrow, "duckdb": read_duckdb}[reader](root)
    json.dump(out, sys.stdout, ensure_ascii=True)


if __name__ == "__main__":
    main()
