"""A scripted Finnhub-compatible WebSocket server, written with another library
(`websockets`), for tradeflow's end-to-end tests.

Usage: ws_finnhub.py SENT_JSON SYMBOLS [quiet]

SYMBOLS is the comma-separated list (three symbols) the client must subscribe to. The
script listens on 127.0.0.1 (a free port, printed on stderr as "listening on PORT"), then
plays one scripted sequence per connection, in order:

  1. waits for a subscribe message per symbol; sends a ping, trade messages (several
     trades and symbols per message, `c` missing or empty, `v` 0), malformed frames, an
     error message ("Subscribing to too many symbols") and more trades; then drops the
     connection without a closing handshake, mid-stream;
  2. waits for the resubscriptions; sends trades, one of them 30 s old (late); then says
     nothing at all until the client gives up on the silent connection and leaves;
  3. waits for the resubscriptions; sends trades for about a second; writes SENT_JSON
     and prints "scenario done" on stderr; then only pings until the client leaves.

With `quiet`, the only scenario is one connection that waits for the subscriptions, sends
trades for about 1.5 s, writes SENT_JSON and prints "scenario done", then sends nothing at
all (no trade, no ping, no WebSocket ping) until the client leaves: a market gone quiet.

Before dropping a connection or declaring the scenario done, it pings the client at the
WebSocket level and waits for the pong, so every frame it sent has been read. Trade
timestamps are the current time (at most 200 ms old), except the late one.

SENT_JSON holds {"frames": [every text frame sent, in order], "subscriptions":
[[subscribe messages] per connection], "tokens": [token query value per connection],
"silence_closed": seconds the client waited on the silent connection}.
"""

import asyncio
import json
import sys
import time
from urllib.parse import parse_qs, urlparse

from websockets.asyncio.server import serve

SENT_PATH = sys.argv[1]
SYMBOLS = sys.argv[2].split(",")
QUIET = sys.argv[3:4] == ["quiet"]

frames = []
subscriptions = []
tokens = []
state = {"connection": 0, "silence_closed": None}
done = asyncio.Event()


def now_ms():
    return int(time.time() * 1000)


def trade(symbol, price, volume, age_ms=0, conditions="absent"):
    t = {"s": symbol, "p": price, "t": now_ms() - age_ms, "v": volume}
    if conditions != "absent":
        t["c"] = conditions
    return t


async def send(ws, frame):
    text = frame if isinstance(frame, str) else json.dumps(frame, separators=(",", ":"))
    frames.append(text)
    await ws.send(text)


async def trades(ws, *elements):
    await send(ws, {"type": "trade", "data": list(elements)})


async def synced(ws):
    """Returns once the client has read everything sent so far."""
    pong = await ws.ping()
    await asyncio.wait_for(pong, 10)


async def expect_subscriptions(ws):
    received = []
    wanted = set(SYMBOLS)
    while {m.get("symbol") for m in received if m.get("type") == "subscribe"} != wanted:
        text = await asyncio.wait_for(ws.recv(), 10)
        received.append(json.loads(text))
    subscriptions.append(received)


async def first(ws):
    a, m, b = SYMBOLS
    await send(ws, {"type": "ping"})
    await trades(ws, trade(a, 187.12, 100, 200, ["1", "12"]), trade(m, 402.5, 0, 150), trade(b, 37000.12345678, 0.00012, 100, []))
    await asyncio.sleep(0.2)
    await trades(ws, trade(b, 37001.5, 0.5), trade(a, 187.13, 20, 0, None))
    await trades(ws, trade(m, 402.55, 7, 10, ["T"]))
    # Malformed frames: each dead-lettered with the parser's reason.
    await send(ws, "this is not json")
    await trades(ws, trade(a, -1, 5), trade(m, 402.6, 3))  # bad_price; the MSFT trade is kept
    await send(ws, {"type": "trade", "data": [{"s": a, "p": 187.2, "v": 5}]})  # missing_field
    await send(ws, {"type": "trade", "data": [{"s": a, "p": 187.2, "t": 1, "v": 5}]})  # bad_timestamp
    await trades(ws, trade(a, 187.2, -5))  # bad_volume
    await send(ws, {"type": "news", "data": []})  # missing_field (unknown type)
    await send(ws, {"type": "error", "msg": "Subscribing to too many symbols"})
    await asyncio.sleep(0.2)
    await trades(ws, trade(a, 187.25, 1), trade(b, 37002, 1.25), trade(m, 402.7, 2))
    await synced(ws)
    ws.transport.abort()  # mid-stream, no closing handshake


async def second(ws):
    a, m, b = SYMBOLS
    await trades(ws, trade(a, 187.3, 10), trade(m, 402.8, 10))
    await trades(ws, trade(a, 150.0, 99, 30_000))  # 30 s old: late
    await trades(ws, trade(b, 37003, 0.1), trade(a, 187.31, 4))
    await synced(ws)
    started = time.monotonic()
    await asyncio.wait_for(ws.wait_closed(), 30)  # silence: the client must leave
    state["silence_closed"] = time.monotonic() - started


async def third(ws):
    a, m, b = SYMBOLS
    for i in range(10):
        await trades(ws, trade(a, 187.4 + i / 100, i), trade(b, 37010 + i, round(0.01 * (i + 1), 2), 50), trade(m, 403 + i / 10, i + 1, 20, []))
        await asyncio.sleep(0.1)
    await synced(ws)
    write_sent()
    while True:
        await asyncio.sleep(0.3)
        await send(ws, {"type": "ping"})


def write_sent():
    with open(SENT_PATH, "w") as out:
        json.dump({"frames": frames, "subscriptions": subscriptions, "tokens": tokens, "silence_closed": state["silence_closed"]}, out)
    print("scenario done", file=sys.stderr, flush=True)
    done.set()


async def quiet(ws):
    a, m, b = SYMBOLS
    for i in range(15):
        await trades(ws, trade(a, 187.4 + i / 100, i + 1), trade(b, 37010 + i, round(0.01 * (i + 1), 2), 30), trade(m, 403 + i / 10, 0, 10, ["T"]))
        await asyncio.sleep(0.1)
    await synced(ws)
    write_sent()
    await ws.wait_closed()  # not a byte more: the client must not take the quiet for a failure


async def handler(ws):
    state["connection"] += 1
    number = state["connection"]
    tokens.append(parse_qs(urlparse(ws.request.path).query).get("token", [None])[0])
    print(f"connection {number} opened", file=sys.stderr, flush=True)
    try:
        await expect_subscriptions(ws)
        if QUIET and number == 1:
            await quiet(ws)
        elif QUIET:
            await asyncio.sleep(3600)
        elif number == 1:
            await first(ws)
        elif number == 2:
            await second(ws)
        elif number == 3:
            await third(ws)
        else:
            await asyncio.sleep(3600)
    except Exception as e:  # the client leaving is how connections 3+ end
        print(f"connection {number} ended: {type(e).__name__}: {e}", file=sys.stderr, flush=True)


async def main():
    async with serve(handler, "127.0.0.1", 0, ping_interval=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on {port}", file=sys.stderr, flush=True)
        await asyncio.sleep(120)  # the test stops the script long before


asyncio.run(main())
