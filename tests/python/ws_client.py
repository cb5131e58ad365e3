"""An independent client (Python's `websockets`) for `tradeflow simulate --serve`.

Usage: ws_client.py LIVE_URL REPLAY_URL REPLAYED_FILE

LIVE_URL serves the simulator with --max-symbols 3 and --disconnect-every 3s; REPLAY_URL
replays REPLAYED_FILE (one symbol). Checks, failing with a message on the first that does
not hold, and prints "all checks passed":

  * a connection receives only the trades of the symbols it subscribed to, before and
    after unsubscribing; messages carry several trades, of several symbols;
  * trade timestamps are current; pings arrive;
  * a fourth subscription is refused with "Subscribing to too many symbols";
  * the server drops the connection about 3 s after it opened, without a closing
    handshake;
  * the replay starts with the subscription and delivers every trade of the file, in
    order, with the same prices, volumes and conditions, its timestamps shifted by one
    constant to the current time.
"""

import asyncio
import json
import sys
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

LIVE, REPLAY, FILE = sys.argv[1:4]


def check(condition, message):
    if not condition:
        print(f"check failed: {message}", file=sys.stderr, flush=True)
        sys.exit(1)


def now_ms():
    return int(time.time() * 1000)


async def collect(ws, seconds):
    """Messages received during `seconds`."""
    messages = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except asyncio.TimeoutError:
            break
    return messages


def trades_of(messages):
    return [t for m in messages if m.get("type") == "trade" for t in m["data"]]


async def subscribe(ws, *symbols, kind="subscribe"):
    for s in symbols:
        await ws.send(json.dumps({"type": kind, "symbol": s}))


async def live():
    opened = time.monotonic()
    async with connect(LIVE, ping_interval=None, compression=None) as ws:
        await subscribe(ws, "AAPL")
        first = await collect(ws, 0.8)
        trades = trades_of(first)
        check(trades, "no AAPL trade within 0.8 s")
        check({t["s"] for t in trades} == {"AAPL"}, f"unsubscribed symbols arrived: {sorted({t['s'] for t in trades})}")
        check(any(m.get("type") == "ping" for m in first), "no ping within 0.8 s (--ping-interval 300ms)")
        check(max(len(m["data"]) for m in first if m.get("type") == "trade") > 1, "no message holds several trades")
        for t in trades:
            check(set(t) >= {"s", "p", "t", "v"}, f"a trade without s, p, t, v: {t}")
            check(abs(t["t"] - now_ms()) < 10_000, f"not a current timestamp: {t}")

        await subscribe(ws, "AAPL", kind="unsubscribe")
        await subscribe(ws, "NVDA", "MSFT")
        await collect(ws, 0.15)  # what was in flight
        second = await collect(ws, 0.6)
        symbols = {t["s"] for t in trades_of(second)}
        check(symbols and symbols <= {"NVDA", "MSFT"}, f"after unsubscribing AAPL and subscribing NVDA, MSFT: {sorted(symbols)}")
        check(any(len({t["s"] for t in m["data"]}) > 1 for m in second if m.get("type") == "trade"),
              "no message mixes symbols")

        await subscribe(ws, "BINANCE:BTCUSDT", "AAPL")  # the fourth is one too many
        replies = await collect(ws, 0.5)
        errors = [m.get("msg") for m in replies if m.get("type") == "error"]
        check(errors == ["Subscribing to too many symbols"], f"errors after a fourth subscription: {errors}")
        check("AAPL" not in {t["s"] for t in trades_of(replies)}, "the refused subscription was honoured")

        try:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosedError as e:
            after = time.monotonic() - opened
            check(2.5 < after < 4.5, f"dropped after {after:.2f} s, not about 3 s")
            check(e.rcvd is None, f"the drop had a closing handshake: {e.rcvd}")
        except asyncio.TimeoutError:
            check(False, "the connection was not dropped (--disconnect-every 3s)")


async def replay():
    expected = []
    with open(FILE) as lines:
        for line in lines:
            record = json.loads(line)
            expected.extend(record["data"] if "type" in record else [record])
    check(expected and {t["s"] for t in expected} == {"AAPL"}, "the replayed file is one symbol's")
    async with connect(REPLAY, ping_interval=None, compression=None) as ws:
        await subscribe(ws, "AAPL")
        subscribed = now_ms()
        received = []
        while len(received) < len(expected):
            try:
                received += trades_of([json.loads(await asyncio.wait_for(ws.recv(), 5))])
            except asyncio.TimeoutError:
                break
        elapsed = now_ms() - subscribed
    check(len(received) == len(expected), f"replayed {len(received)} of {len(expected)} trades")
    for got, want in zip(received, expected):
        check((got["s"], got["p"], got["v"], got.get("c")) == (want["s"], want["p"], want["v"], want.get("c")),
              f"replayed {got} for {want}")
    offsets = {got["t"] - want["t"] for got, want in zip(received, expected)}
    check(len(offsets) == 1, f"timestamps shifted by {len(offsets)} different offsets")
    start = received[0]["t"]
    check(abs(start - subscribed) < 2_000, f"the replay started at {start}, not at the subscription ({subscribed})")
    span = max(t["t"] for t in expected) - expected[0]["t"]
    check(span > 500, f"the file spans only {span} ms")
    check(elapsed > span - 300, f"a replay of {span} ms of trades took {elapsed} ms: not paced")


asyncio.run(live())
asyncio.run(replay())
print("all checks passed", flush=True)
