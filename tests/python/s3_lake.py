"""Reads a tradeflow lake on an S3-compatible server through the S3 API, with pyarrow.

Usage: s3_lake.py COMMAND BUCKET PREFIX [DEST] | s3_lake.py etag BUCKET KEY

  list           every object under PREFIX (PREFIX "" = the whole bucket), as JSON
                 [[key, size], ...], keys relative to the bucket, sorted.
  download DEST  copies every object under PREFIX to DEST/<key relative to PREFIX>.
  read           the trades, window_metrics and anomalies datasets read with
                 pyarrow.dataset and partitioning="hive", as one JSON object:
                   trades:         [symbol, date, ts_ms, price, volume, conditions]
                   window_metrics: [symbol, date, window_start_ms, trade_count]
                   anomalies:      [symbol, date, window_start_ms, kind]
                 decimals and partition values as read_lake.py prints them.
  count          the number of rows of each of those datasets, as JSON.
  etag           (BUCKET KEY) the ETag of the object BUCKET/KEY, from a HEAD request
                 signed with AWS Signature Version 4 (stdlib only).

The server and credentials come from S3_TEST_ENDPOINT (host:port, plain HTTP),
S3_TEST_ACCESS_KEY, S3_TEST_SECRET_KEY and S3_TEST_REGION; the filesystem is
pyarrow.fs.S3FileSystem(endpoint_override=..., scheme="http", access_key=...,
secret_key=..., region=...).

The datasets are opened from the list of their files with partition_base_dir rather than
from the directory: s3s-fs answers a HeadObject on a "directory" key with a 500 (real S3
answers 404, after which pyarrow lists), and pyarrow heads the path it is given first.
"""

import datetime
import hashlib
import hmac
import json
import os
import sys
import urllib.parse
import urllib.request

from read_lake import dec, part


def settings():
    env = os.environ
    return env["S3_TEST_ENDPOINT"], env["S3_TEST_ACCESS_KEY"], env["S3_TEST_SECRET_KEY"], env["S3_TEST_REGION"]


def filesystem():
    import pyarrow.fs as pafs

    endpoint, access, secret, region = settings()
    return pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", access_key=access, secret_key=secret,
                             region=region)


def objects(fs, bucket, prefix):
    """(path, size) of every object under bucket/prefix; paths start with the bucket."""
    import pyarrow.fs as pafs

    base = f"{bucket}/{prefix}".rstrip("/")
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    return sorted((i.path, i.size) for i in fs.get_file_info(selector) if i.type == pafs.FileType.File)


def dataset(fs, bucket, prefix, name):
    import pyarrow.dataset as ds

    base = f"{bucket}/{prefix}".rstrip("/") + f"/{name}"
    files = [path for path, _ in objects(fs, bucket, f"{prefix}/{name}".lstrip("/"))]
    if not files:
        return None
    return ds.dataset(files, filesystem=fs, format="parquet", partitioning="hive",
                      partition_base_dir=base).to_table()


def ms(table, name):
    import pyarrow as pa

    return table.column(name).cast(pa.int64()).to_pylist()


def read(fs, bucket, prefix):
    out = {"trades": [], "window_metrics": [], "anomalies": []}
    t = dataset(fs, bucket, prefix, "trades")
    if t is not None:
        cols = [t.column("symbol").to_pylist(), t.column("date").to_pylist(), ms(t, "ts"),
                t.column("price").to_pylist(), t.column("volume").to_pylist(), t.column("conditions").to_pylist()]
        for s, d, ts, p, v, c in zip(*cols):
            out["trades"].append([part(s), part(d), ts, dec(p), dec(v), c])
    t = dataset(fs, bucket, prefix, "window_metrics")
    if t is not None:
        cols = [t.column("symbol").to_pylist(), t.column("date").to_pylist(), ms(t, "window_start"),
                t.column("trade_count").to_pylist()]
        out["window_metrics"] = [[s, part(d), w, n] for s, d, w, n in zip(*cols)]
    t = dataset(fs, bucket, prefix, "anomalies")
    if t is not None:
        cols = [t.column("symbol").to_pylist(), t.column("date").to_pylist(), ms(t, "window_start"),
                t.column("kind").to_pylist()]
        out["anomalies"] = [[s, part(d), w, k] for s, d, w, k in zip(*cols)]
    return out


def count(fs, bucket, prefix):
    out = {}
    for name in ("trades", "window_metrics", "anomalies"):
        t = dataset(fs, bucket, prefix, name)
        out[name] = 0 if t is None else t.num_rows
    return out


def download(fs, bucket, prefix, dest):
    base = f"{bucket}/{prefix}".rstrip("/") + "/"
    for path, _ in objects(fs, bucket, prefix):
        target = os.path.join(dest, path[len(base):])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with fs.open_input_stream(path) as src, open(target, "wb") as out:
            out.write(src.read())


def etag(bucket, key):
    """HEAD bucket/key signed with AWS Signature Version 4 (stdlib only), returns the ETag."""
    endpoint, access, secret, region = settings()
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    path = "/" + urllib.parse.quote(bucket, safe="") + "/" + urllib.parse.quote(key, safe="/~")
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": endpoint, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(["HEAD", path, ""] + [f"{k}:{headers[k]}" for k in sorted(headers)] + ["", signed, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for step in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, step.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    request = urllib.request.Request(f"http://{endpoint}{path}", method="HEAD", headers={
        "x-amz-content-sha256": payload,
        "x-amz-date": amz_date,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={signed}, Signature={signature}",
    })
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers["ETag"]


def main():
    command, bucket = sys.argv[1], sys.argv[2]
    if command == "etag":
        json.dump(etag(bucket, sys.argv[3]), sys.stdout)
        return
    prefix = sys.argv[3].strip("/")
    fs = filesystem()
    if command == "list":
        json.dump([[path[len(bucket) + 1:], size] for path, size in objects(fs, bucket, prefix)], sys.stdout)
    elif command == "download":
        download(fs, bucket, prefix, sys.argv[4])
    elif command == "read":
        json.dump(read(fs, bucket, prefix), sys.stdout, ensure_ascii=True)
    elif command == "count":
        json.dump(count(fs, bucket, prefix), sys.stdout)
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
