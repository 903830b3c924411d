#!/usr/bin/env python3
"""Where a tab's receive rate goes (bench/README.rst, "The browser client").

    python bench/web_websocket_floor.py

The relay forwards 5,000 FRAME lines (117-byte payloads, no end-to-end
layer) from a TCP sender to (1) a Python WebSocket client (the
``websockets`` package) and (2) a bare browser WebSocket in headless
Chromium that only counts messages; prints lines/s at the receiver.
"""
import sys, time, threading, base64
sys.path.insert(0, "/work/wt/web")
from tests.browser import Browser, Relay
from tests.daemon import LineSocket, register
from relaychat.crypto.keypair import Identity
from websockets.sync.client import connect

N = 5000
relay = Relay(limits="lines_per_second = 10000000.0\nline_burst = 20000000\n"); relay.start()
payload = base64.b64encode(b"x" * 117).decode()
def sender_session(receiver_nick, accept):
    s = LineSocket(relay.tcp); s.register("sender" + str(time.time_ns() % 100000), Identity.generate())
    s.send(f"OFFER {receiver_nick}")
    reply = s.read_line(); sid = reply.split()[2]
    accept(sid)
    assert s.read_line().startswith("ACCEPTED"), "no accept"
    return s, sid
try:
    # 1. Python WebSocket client
    ws = connect(  # noqa: the sync client, used directly
        f"ws://127.0.0.1:{relay.web}/relay", max_size=None)
    ask = lambda line: (ws.send(line), ws.recv())[1]
    register(ask, "pyws", Identity.generate())
    def accept(sid):
        offered = ws.recv(); assert offered.startswith("OFFERED"), offered
        ws.send(f"ACCEPT {sid}"); assert ws.recv().startswith("OK ACCEPT")
    box = {}
    t = threading.Thread(target=lambda: box.update(s=sender_session("pyws", accept)))
    t.start(); t.join()
    s, sid = box["s"]
    def send_all():
        for _ in range(N): s.send(f"FRAME {sid} {payload}")
    threading.Thread(target=send_all).start()
    first = None
    for i in range(N):
        ws.recv()
        if first is None: first = time.perf_counter()
    print("python websocket client: lines/s", round((N - 1) / (time.perf_counter() - first)))
    ws.close(); s.close()
    # 2. bare browser WebSocket: count messages only
    b = Browser()
    try:
        b.sign_in(relay.url, "benchpage")
        d = b.driver; d.set_script_timeout(120)
        d.execute_async_script("""
          const done = arguments[arguments.length-1];
          const ws = new WebSocket(new URL('relay', location.href).href.replace('http','ws'));
          window.raw = {ws, lines: []};
          ws.onmessage = ({data}) => window.raw.lines.push(data);
          ws.onopen = () => done();""")
        # register via the raw socket, driven from Python
        def ask(line):
            n = d.execute_script("return window.raw.lines.length")
            d.execute_script("window.raw.ws.send(arguments[0])", line)
            while d.execute_script("return window.raw.lines.length") == n: time.sleep(0.005)
            return d.execute_script("return window.raw.lines[window.raw.lines.length-1]")
        register(ask, "rawtab", Identity.generate())
        def accept(sid):
            while not any(l.startswith("OFFERED") for l in d.execute_script("return window.raw.lines")): time.sleep(0.01)
            d.execute_script(f"window.raw.ws.send('ACCEPT {sid}')")
        s, sid = sender_session("rawtab", accept)
        d.execute_script("""window.raw.count = 0; window.raw.ws.onmessage = () => { if (window.raw.count++ === 0) window.raw.first = performance.now(); window.raw.last = performance.now(); };""")
        send_all()
        while d.execute_script("return window.raw.count") < N: time.sleep(0.05)
        first, last = d.execute_script("return [window.raw.first, window.raw.last]")
        print("bare browser WebSocket: messages/s", round((N - 1) / ((last - first) / 1000)))
    finally:
        b.quit()
finally:
    relay.remove()
