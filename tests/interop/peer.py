#!/usr/bin/env python3
"""A permessage-deflate peer built on Python's `websockets` (pinned in requirements.txt), driven
by tests/python_websockets.rs. Two modes:

    peer.py server CONFIG      echo server on 127.0.0.1 (a free port). Prints `PORT n`, then one
                               JSON line per connection: the extension it negotiated. Stops when
                               stdin closes, or after 120 s.
    peer.py client URL CONFIG  connects, sends the scripted messages below, checks every echo,
                               and prints one JSON line: what was negotiated and what went wrong.
                               Exit status 0 only if every echo matched.

CONFIG is a JSON object with the keyword arguments of websockets' `ServerPerMessageDeflateFactory`
or `ClientPerMessageDeflateFactory` (`server_no_context_takeover`, `client_no_context_takeover`,
`server_max_window_bits`, `client_max_window_bits`, `compress_settings`), or `null` to offer or
accept no compression at all.
"""

import asyncio
import json
import os
import random
import sys

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)

# Well above the largest scripted message, so that websockets' own limit never interferes.
MAX_SIZE = 16 << 20
DEADLINE = 120


def json_record(i):
    """One record of the JSON sample: keys repeat, values vary, as in an API's responses."""
    rng = random.Random(i)
    return {
        "id": 100000 + i,
        "type": rng.choice(["order", "refund", "invoice"]),
        "customer": {"name": "customer-%d" % rng.randrange(5000), "tier": rng.choice("abc")},
        "items": [{"sku": "SKU-%05d" % rng.randrange(99999), "qty": rng.randrange(1, 9),
                   "price": round(rng.uniform(1, 500), 2)} for _ in range(rng.randrange(1, 5))],
        "paid": rng.random() < 0.8,
    }


def messages():
    """The script: (label, message or list of fragments). Text is str, binary is bytes."""
    rng = random.Random(7)
    small_json = json.dumps(json_record(1))
    large_json = json.dumps([json_record(i) for i in range(6000)])  # about 1 MiB
    noise = bytes(rng.getrandbits(8) for _ in range(300_000))  # incompressible
    return [
        ("short text", "hi"),
        ("empty text", ""),
        ("empty binary", b""),
        ("short binary", b"\x00\x01\x02\xff"),
    ] + [("repeated JSON %d" % n, small_json) for n in range(5)] + [
        ("large JSON", large_json),
        ("incompressible binary", noise),
        ("compressible binary", b"\x00" * 2_000_000),
        ("fragmented text", [large_json[:1000], large_json[1000:200_000], large_json[200_000:]]),
        ("fragmented binary", [noise[:5], noise[5:]]),
        ("unicode text", "\u00e9t\u00e9 \u2603 \U0001f600 " * 5000),
        ("repeated JSON after large", small_json),
    ]


def describe(protocol):
    """The permessage-deflate parameters in force on a connection, or None."""
    for ext in protocol.extensions:
        if isinstance(ext, PerMessageDeflate):
            return {
                "remote_no_context_takeover": ext.remote_no_context_takeover,
                "local_no_context_takeover": ext.local_no_context_takeover,
                "remote_max_window_bits": ext.remote_max_window_bits,
                "local_max_window_bits": ext.local_max_window_bits,
            }
    return None


def flatten(message):
    if isinstance(message, list):
        return message[0][:0].join(message)
    return message


async def run_server(config):
    factories = [] if config is None else [ServerPerMessageDeflateFactory(**config)]

    async def echo(ws):
        print(json.dumps({"negotiated": describe(ws.protocol),
                          "offer": ws.request.headers.get("Sec-WebSocket-Extensions")}),
              flush=True)
        try:
            async for message in ws:
                await ws.send(message)
        except websockets.ConnectionClosedError:
            pass  # no close frame: reported below as 1006, for the test to judge
        print(json.dumps({"close_code": ws.close_code}), flush=True)

    async with serve(echo, "127.0.0.1", 0, compression=None, extensions=factories,
                     max_size=MAX_SIZE) as server:
        port = server.sockets[0].getsockname()[1]
        print("PORT %d" % port, flush=True)
        loop = asyncio.get_running_loop()
        # The test holds our stdin; when it goes away, so do we. The reading thread cannot be
        # cancelled, so the deadline ends the process outright.
        try:
            await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), DEADLINE)
        except TimeoutError:
            print("peer.py server: no end of stdin after %d s" % DEADLINE, file=sys.stderr)
            os._exit(3)


async def run_client(url, config):
    factories = [] if config is None else [ClientPerMessageDeflateFactory(**config)]
    failures = []
    async with connect(url, compression=None, extensions=factories, max_size=MAX_SIZE,
                       open_timeout=10, close_timeout=10) as ws:
        result = {
            "answer": ws.response.headers.get("Sec-WebSocket-Extensions"),
            "negotiated": describe(ws.protocol),
        }
        sent = 0
        for label, message in messages():
            await ws.send(message)
            expected = flatten(message)
            sent += len(expected.encode() if isinstance(expected, str) else expected)
            echoed = await asyncio.wait_for(ws.recv(), 30)
            if type(echoed) is not type(expected) or echoed != expected:
                failures.append("%s: the echo differs (%s of %d, sent %s of %d)" % (
                    label, type(echoed).__name__, len(echoed), type(expected).__name__,
                    len(expected)))
        result["payload_bytes"] = sent
    result["failures"] = failures
    result["close_code"] = ws.close_code
    print(json.dumps(result), flush=True)
    return 0 if not failures else 1


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "server" and len(sys.argv) == 3:
        asyncio.run(run_server(json.loads(sys.argv[2])))
        return 0
    if mode == "client" and len(sys.argv) == 4:
        return asyncio.run(asyncio.wait_for(
            run_client(sys.argv[2], json.loads(sys.argv[3])), DEADLINE))
    print(__doc__, file=sys.stderr)
    print("websockets %s" % websockets.__version__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
