"""
A Python `websockets` (10.4, legacy asyncio API) peer for test/faults/peers.test.ts.

It prints one JSON object per line on stdout, each with "event" and "at" (CLOCK_MONOTONIC in
ms, the clock of the tests' mono()), and always ends by itself:

  healthy URL INTERVAL_MS DURATION_MS
      keepalive of its own (ping_interval INTERVAL_MS); after DURATION_MS it checks that an echo
      still comes back, reports {"event":"report", pingsSent, pingsAnswered, pongsSent, open,
      echoed}, closes with 1000 and prints {"event":"closed"}.
  stall URL WAIT_MS
      no keepalive, max_queue=1; sends `!send 16` three times and never calls recv(): its reader
      parks after the second message, so nothing the server sends is read any more (pings go
      unanswered). Prints "sent" {lastSendAt: when the last command was written}, "stalled"
      (the reader is parked), and "closed" {code, queued, pongsSent} once the server ends the
      connection, or "gave-up" after WAIT_MS.
"""
import asyncio
import json
import sys
import time

import websockets
from websockets.legacy.client import WebSocketClientProtocol


def now():
    return time.monotonic_ns() / 1e6


def say(event, **fields):
    print(json.dumps({"event": event, "at": now(), **fields}), flush=True)


class Counting(WebSocketClientProtocol):
    """Counts its own pings (sent, answered) and the pongs it sent to the server's pings."""

    pings_sent = 0
    pings_answered = 0
    pongs_sent = 0

    async def ping(self, data=None):
        waiter = await super().ping(data)
        self.pings_sent += 1

        def answered(future):
            if not future.cancelled() and future.exception() is None:
                self.pings_answered += 1

        waiter.add_done_callback(answered)
        return waiter

    async def pong(self, data=b""):
        self.pongs_sent += 1
        await super().pong(data)


async def healthy(url, interval_ms, duration_ms):
    interval = interval_ms / 1000
    async with websockets.connect(
        url, create_protocol=Counting, ping_interval=interval, ping_timeout=5 * interval, close_timeout=1
    ) as ws:
        say("open", port=ws.transport.get_extra_info("sockname")[1])
        await asyncio.sleep(duration_ms / 1000)
        was_open = ws.open
        echoed = False
        if was_open:
            await ws.send("py-echo")
            echoed = await asyncio.wait_for(ws.recv(), 5) == "py-echo"
        say(
            "report",
            pingsSent=ws.pings_sent,
            pingsAnswered=ws.pings_answered,
            pongsSent=ws.pongs_sent,
            open=was_open,
            echoed=echoed,
        )
    say("closed", code=ws.close_code)


async def stall(url, wait_ms):
    # Not `async with`: its close() would wait for the parked reader.
    ws = await websockets.connect(url, create_protocol=Counting, ping_interval=None, max_queue=1, close_timeout=1)
    say("open", port=ws.transport.get_extra_info("sockname")[1])
    await ws.send("!send 16")
    await ws.send("!send 16")
    last_send_at = now()
    await ws.send("!send 16")
    say("sent", lastSendAt=last_send_at)
    deadline = now() + wait_ms
    # The reader parks on a full queue (max_queue=1) once the second message is read.
    while ws._put_message_waiter is None and now() < deadline:
        await asyncio.sleep(0.002)
    say("stalled", queued=len(ws.messages), parked=ws._put_message_waiter is not None)
    try:
        await asyncio.wait_for(ws.wait_closed(), max(0.0, (deadline - now()) / 1000))
        say("closed", code=ws.close_code, queued=len(ws.messages), pongsSent=ws.pongs_sent)
    except asyncio.TimeoutError:
        say("gave-up")
    # Drop the transport; asyncio.run() cancels the parked reader when this returns.
    ws.transport.abort()


if __name__ == "__main__":
    mode, url, *rest = sys.argv[1:]
    try:
        if mode == "healthy":
            asyncio.run(healthy(url, float(rest[0]), float(rest[1])))
        elif mode == "stall":
            asyncio.run(stall(url, float(rest[0])))
        else:
            raise SystemExit(f"unknown mode {mode}")
    except Exception as error:  # report, so the test shows it instead of a silent exit
        say("error", message=repr(error))
        sys.exit(1)
