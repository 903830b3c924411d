#!/usr/bin/env python3
"""Browser-client benchmark: one headless Chromium tab against the Python client.

    python bench/web.py [--setups 40] [--messages 3000] [--rounds 3]

Figures (each beside a Python-to-Python baseline measured in the same run,
through the same ``twistd relaychat``, so the answer is a ratio):

* **set-up**: a caller offers a conversation and the callee accepts at once
  and sends a first message as soon as its handshake is verified; the time
  from the caller's ``OFFER`` to that first message arriving at the caller
  (one clock), p50 and p99 over ``--setups`` sessions. Browser caller to
  Python callee, against Python caller to Python callee.
* **messages/s**: one conversation, ``--messages`` 100-byte TEXT messages
  sent as fast as the sender goes; the rate at the receiver from the first
  to the last arrival. Browser tab sending to Python and receiving from
  Python, against Python to Python.

The tab runs the page's own modules (client.js over its own WebSocket)
inside the page served by the relay, driven through WebDriver; the DOM is
not involved, so the figures are the protocol stack's in the browser.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from twisted.internet import defer, task  # noqa: E402
from twisted.internet.threads import deferToThread  # noqa: E402

from relaychat import client as api  # noqa: E402
from relaychat.crypto.keypair import Identity  # noqa: E402
from relaychat.crypto.pins import KnownPeers  # noqa: E402
from tests.browser import Browser, Relay  # noqa: E402

TEXT = "x" * 100
_PROFILES = tempfile.TemporaryDirectory(prefix="relaychat-bench-web-")  # removed at exit

# Runs in the page: a second client of the page's own modules, its own WebSocket.
HARNESS = r"""
const done = arguments[arguments.length - 1];
(async () => {
  const [{ ChatClient, SeenMail }, { Identity }, { KnownPeers }, { solvePow }, { SmpRunner }] = await Promise.all(
    ['./client.js', './identity.js', './pins.js', './pow.js', './smprun.js'].map((m) => import(m)));
  const url = new URL('relay', location.href); url.protocol = 'ws:';
  const ws = new WebSocket(url.href, 'relaychat');
  const waiters = [];
  const events = [];
  const onEvent = (e) => { events.push(e); for (const w of waiters.splice(0)) w(); };
  const runner = new SmpRunner();
  const smp = Object.fromEntries(['start', 'respond', 'abort', 'receive', 'drop'].map((m) => [m, async (...a) => runner[m](...a)]));
  const client = new ChatClient({ identity: Identity.generate(), knownPeers: new KnownPeers(), seenMail: new SeenMail(),
    send: (l) => ws.send(l), smp, onEvent });
  ws.onmessage = ({ data }) => client.relay.receiveLine(data);
  await new Promise((r) => (ws.onopen = r));
  await client.login(arguments[0], async (c, b) => solvePow(c, b));
  const next = (pred) => new Promise((resolve) => {
    const look = () => { const i = events.findIndex(pred); if (i >= 0) resolve(events.splice(i, 1)[0]); else waiters.push(look); };
    look();
  });
  window.bench = { client, next, events, ws };
  done('ready');
})().catch((e) => done('error ' + e.stack));
"""

SETUP = r"""
const done = arguments[arguments.length - 1];
(async () => {
  const { client, next } = window.bench;
  const times = [];
  for (let i = 0; i < arguments[1]; i++) {
    const t0 = performance.now();
    const sid = await client.call(arguments[0]);
    await next((e) => e.type === 'message' && e.sid === sid);
    times.push(performance.now() - t0);
    await client.hangUp(sid);
  }
  done(times);
})().catch((e) => done('error ' + e.stack));
"""

SEND = r"""
const done = arguments[arguments.length - 1];
(async () => {
  const { client, next, ws } = window.bench;
  const sid = await client.call(arguments[0]);
  await next((e) => e.type === 'open' && e.sid === sid);
  const text = 'x'.repeat(100);
  for (let i = 0; i < arguments[1]; i++) {
    client.send(sid, text);
    if (ws.bufferedAmount > 1 << 20) while (ws.bufferedAmount > 1 << 18) await new Promise((r) => setTimeout(r, 1));
  }
  await next((e) => e.type === 'message' && e.sid === sid && e.text === 'done');
  await client.hangUp(sid);
  done('sent');
})().catch((e) => done('error ' + e.stack));
"""

RECEIVE = r"""
const done = arguments[arguments.length - 1];
(async () => {
  const { client, next, events } = window.bench;
  const offer = await next((e) => e.type === 'offered');
  await client.acceptOffer(offer.sid);
  let first = null, count = 0;
  await new Promise((resolve) => {
    const original = client.onEvent;
    client.onEvent = (e) => {
      if (e.type === 'message' && e.sid === offer.sid) {
        count++;
        if (first === null) first = performance.now();
        if (count === arguments[0]) { client.onEvent = original; resolve(); }
      } else original(e);
    };
  });
  const elapsed = (performance.now() - first) / 1000;
  done({ rate: (arguments[0] - 1) / elapsed });
})().catch((e) => done('error ' + e.stack));
"""


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@defer.inlineCallbacks
def python_user(reactor: Any, port: int, nick: str) -> Any:
    # A fresh profile per user: the library keeps its files (pins, the relay's
    # id, seen mail) beside the pins file, and runs must not share them.
    profile = Path(_PROFILES.name) / nick
    client = yield api.connect(reactor, f"tcp:host=127.0.0.1:port={port}", Identity.generate(), nick,
                               KnownPeers.in_directory(profile))
    return client


def auto_answer(client: Any, first_message: bool = True) -> None:
    """Accept every offer; send a first message as soon as the handshake is verified."""
    def offered(offer: Any) -> None:
        def ready(conversation: Any) -> None:
            if first_message:
                conversation.send("hello")
        offer.accept().addCallback(ready).addErrback(lambda f: None)
    client.observe_offers(offered)


@defer.inlineCallbacks
def python_setups(reactor: Any, caller: Any, callee_nick: str, n: int) -> Any:
    times = []
    for _ in range(n):
        got: list[float] = []
        t0 = time.perf_counter()
        conversation = yield caller.call(callee_nick)
        conversation.observe_messages(lambda text: got.append(time.perf_counter()))
        while not got:
            yield task.deferLater(reactor, 0.0005, lambda: None)
        times.append((got[0] - t0) * 1000)
        yield conversation.close()
    return times


def count_arrivals(receiver: Any) -> list[float]:
    """Accept every offer to ``receiver``; the returned list gets each message's arrival time."""
    arrivals: list[float] = []

    def offered(offer: Any) -> None:
        offer.accept().addCallback(lambda c: c.observe_messages(lambda t: arrivals.append(time.perf_counter())))
    receiver.observe_offers(offered)
    return arrivals


@defer.inlineCallbacks
def python_rate(reactor: Any, sender: Any, receiver_nick: str, arrivals: list[float], n: int) -> Any:
    del arrivals[:]
    conversation = yield sender.call(receiver_nick)
    for i in range(n):
        conversation.send(TEXT)
        if i % 200 == 199:
            yield task.deferLater(reactor, 0, lambda: None)
    while len(arrivals) < n:
        yield task.deferLater(reactor, 0.001, lambda: None)
    yield conversation.close()
    return (n - 1) / (arrivals[-1] - arrivals[0])


@defer.inlineCallbacks
def main(reactor: Any, args: argparse.Namespace) -> Any:
    relay = Relay(limits="lines_per_second = 10000000.0\nline_burst = 20000000\n")  # measure the clients, not the rate limit
    relay.start()
    browser = Browser()
    try:
        driver = browser.driver
        driver.set_script_timeout(600)
        yield deferToThread(browser.sign_in, relay.url, "benchpage")
        ready = yield deferToThread(driver.execute_async_script, HARNESS, "benchtab")
        assert ready == "ready", ready
        callee = yield python_user(reactor, relay.tcp, "benchcallee")
        auto_answer(callee)
        caller = yield python_user(reactor, relay.tcp, "benchcaller")

        results: dict[str, Any] = {}
        sink = yield python_user(reactor, relay.tcp, "benchsink")
        other = yield python_user(reactor, relay.tcp, "benchother")
        other_arrivals = count_arrivals(other)
        arrivals: list[float] = []

        def sink_offer(offer: Any) -> None:
            def ready_(c: Any) -> None:
                def got(text: str) -> None:
                    arrivals.append(time.perf_counter())
                    if len(arrivals) == args.messages:
                        c.send("done")
                c.observe_messages(got)
            offer.accept().addCallback(ready_)
        sink.observe_offers(sink_offer)

        samples: dict[str, list[float]] = {"browser": [], "python": []}
        rates: dict[str, list[float]] = {"tab_send_per_s": [], "tab_receive_per_s": [], "python_per_s": []}
        for _round in range(args.rounds):  # the systems take turns, round after round
            browser_setup = yield deferToThread(driver.execute_async_script, SETUP, "benchcallee", args.setups)
            assert isinstance(browser_setup, list), browser_setup
            samples["browser"] += browser_setup[1:] if _round == 0 else browser_setup  # the first is JIT warm-up
            samples["python"] += (yield python_setups(reactor, caller, "benchcallee", args.setups))

            del arrivals[:]
            sent = yield deferToThread(driver.execute_async_script, SEND, "benchsink", args.messages)
            assert sent == "sent", sent
            rates["tab_send_per_s"].append((args.messages - 1) / (arrivals[-1] - arrivals[0]))

            receiving = deferToThread(driver.execute_async_script, RECEIVE, args.messages)
            yield task.deferLater(reactor, 0.3, lambda: None)
            conversation = yield caller.call("benchtab")
            for i in range(args.messages):
                conversation.send(TEXT)
                if i % 200 == 199:
                    yield task.deferLater(reactor, 0, lambda: None)
            received = yield receiving
            assert isinstance(received, dict), received
            rates["tab_receive_per_s"].append(received["rate"])
            yield conversation.close()

            rates["python_per_s"].append((yield python_rate(reactor, caller, "benchother", other_arrivals, args.messages)))
        for name, values in samples.items():
            results[f"setup_{name}_ms"] = {"p50": statistics.median(values), "p99": pct(values, 0.99), "samples": values}
        for name, values in rates.items():
            results[name] = statistics.median(values)
            results[name + "_rounds"] = values
        b, p = results["setup_browser_ms"], results["setup_python_ms"]
        print(f"{'figure':44} {'browser':>10} {'python':>10} {'ratio':>7}")
        print(f"{'set-up, offer to first message, p50 (ms)':44} {b['p50']:10.1f} {p['p50']:10.1f} {b['p50'] / p['p50']:7.2f}")
        print(f"{'set-up, offer to first message, p99 (ms)':44} {b['p99']:10.1f} {p['p99']:10.1f} {b['p99'] / p['p99']:7.2f}")
        for key in ("tab_send_per_s", "tab_receive_per_s"):
            label = "messages/s, one tab " + ("sending" if "send" in key else "receiving")
            print(f"{label:44} {results[key]:10.0f} {results['python_per_s']:10.0f} {results[key] / results['python_per_s']:7.2f}")
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=2))
        for client in (callee, caller, sink, other):
            yield client.quit()
    finally:
        yield deferToThread(browser.quit)
        relay.remove()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", type=int, default=40)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="bench/results/web.json")
    task.react(main, [parser.parse_args()])
