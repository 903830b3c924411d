"""Serving the browser client: the daemon's files, relaychat-web's, and the wheel's are one set.

A relay that serves the page could serve other code; the careful user runs
``relaychat-web`` from their own installed package instead, and anyone can
compare digests. These tests show that the daemon (``web_client = true``)
and ``relaychat-web`` serve byte-identical files with the same digest, that
every response carries the strict policy, and that a wheel installs them.
"""

from __future__ import annotations

import glob
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from relaychat import web
from relaychat.web.serve import check_relay_url
from tests.browser import Relay

ROOT = Path(__file__).resolve().parents[1]


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class LocalServer:
    def __init__(self, relay_url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relaychat.web.serve", "--port", "0", relay_url], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.process.stdout is not None
        first, second = self.process.stdout.readline(), self.process.stdout.readline()
        match = re.search(r"open (http://127\.0\.0\.1:\d+/)", first)
        assert match, first + second
        self.url = match.group(1)
        self.digest = second.split()[-1]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        assert self.process.stdout is not None
        self.process.stdout.close()


class Serving(SynchronousTestCase):
    def setUp(self) -> None:
        self.relay = Relay()
        self.relay.start()
        self.addCleanup(self.relay.remove)

    def test_daemon_and_own_package_serve_identical_files(self) -> None:
        local = LocalServer(f"ws://127.0.0.1:{self.relay.web}/relay")
        self.addCleanup(local.stop)
        assert self.relay.daemon is not None
        logged = re.search(r"files sha256 ([0-9a-f]{64})", self.relay.daemon.log())
        self.assertIsNotNone(logged)
        assert logged is not None
        self.assertEqual(logged.group(1), local.digest)
        self.assertEqual(local.digest, web.digest())
        served = {}
        for name, data in web.files().items():
            status, headers, body = get(self.relay.url + name)
            self.assertEqual((status, body), (200, data), name)
            self.assertEqual(get(local.url + name)[2], body, name)
            served[name] = body
            self.assertIn("default-src 'none'", headers["Content-Security-Policy"])
            self.assertNotIn("unsafe", headers["Content-Security-Policy"])
            self.assertEqual(headers["X-Content-Type-Options"], "nosniff")
        self.assertEqual(web.digest(served), local.digest)
        self.assertEqual(get(self.relay.url)[2], web.files()["index.html"])
        # where the relay is: data beside the code, different by design
        self.assertEqual(get(self.relay.url + "relay.json")[2], b'{"websocket": "/relay"}')
        status, headers, body = get(local.url + "relay.json")
        self.assertEqual(body, f'{{"websocket": "ws://127.0.0.1:{self.relay.web}/relay"}}'.encode())
        self.assertIn(f"connect-src 'self' ws://127.0.0.1:{self.relay.web}/relay;", headers["Content-Security-Policy"])

    def test_nothing_else_is_served(self) -> None:
        for path in ("../setup.py", "vendor/", "static/index.html", "vendor/VENDOR.json.bak", "%2e%2e/__init__.py"):
            status, _, body = get(self.relay.url + path)
            self.assertEqual((status, body), (404, b"not found\n"), path)


class Page(SynchronousTestCase):
    def test_index_hashes_are_up_to_date(self) -> None:
        """Every module and the stylesheet have an integrity hash in index.html (python -m relaychat.web refreshes them)."""
        index = (web.STATIC / "index.html").read_text(encoding="utf-8")
        self.assertEqual(index, web.render_index(index), "run: python -m relaychat.web")
        for name in web.module_files():
            self.assertIn(f'"./{name}": "sha384-', index, name)
        self.assertNotRegex(index, r"<script(?![^>]*(type=\"importmap\"|src=))")  # no inline script but the import map
        self.assertNotIn("style=", index)

    def test_no_module_builds_html_from_strings(self) -> None:
        for path in web.STATIC.glob("*.js"):
            text = path.read_text(encoding="utf-8")
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
                self.assertNotIn(sink, text, f"{path.name} uses {sink}")

    def test_relay_url_rules(self) -> None:
        self.assertEqual(check_relay_url("wss://relay.example/relay"), "wss://relay.example/relay")
        self.assertEqual(check_relay_url("ws://127.0.0.1:7735/relay"), "ws://127.0.0.1:7735/relay")
        for bad in ("ws://relay.example/relay", "http://relay.example/", "wss://", "wss://x/ 'unsafe-eval'", "wss://x/?a=1"):
            self.assertRaises(usage.UsageError, check_relay_url, bad)


class Wheel(SynchronousTestCase):
    def test_wheel_installs_every_served_file(self) -> None:
        out = tempfile.mkdtemp()
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", out],
                                cwd=ROOT, capture_output=True, text=True, timeout=300)
        if result.returncode != 0 and "bdist_wheel" in result.stderr:
            raise self.skipTest("pip cannot build wheels here")
        self.assertEqual(result.returncode, 0, result.stderr)
        [wheel] = glob.glob(f"{out}/relaychat-*.whl")
        with zipfile.ZipFile(wheel) as z:
            packaged = {name[len("relaychat/web/static/"):]: z.read(name) for name in z.namelist()
                        if name.startswith("relaychat/web/static/") and not name.endswith("/")}
            entry_points = z.read(next(n for n in z.namelist() if n.endswith("entry_points.txt"))).decode()
        self.assertEqual({k: v for k, v in packaged.items() if k in web.files()}, dict(web.files()))
        self.assertEqual(web.digest({k: v for k, v in packaged.items() if k in web.files()}), web.digest())
        self.assertIn("relaychat-web = relaychat.web.serve:main", entry_points)


class Bounds(SynchronousTestCase):
    """What an HTTP client can make the relay hold on a web-client listener."""

    def setUp(self) -> None:
        self.relay = Relay()
        self.relay.start()
        self.addCleanup(self.relay.remove)

    def test_a_request_body_is_refused_not_stored(self) -> None:
        import socket

        sock = socket.create_connection(("127.0.0.1", self.relay.web), timeout=10)
        self.addCleanup(sock.close)
        body_size = 50 * 1024 * 1024
        sock.sendall(b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % body_size)
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < body_size:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # reset by the relay: what we want
        self.assertLess(sent, body_size, "the relay accepted a 50-MB body")
        # and it still serves
        self.assertEqual(get(self.relay.url + "relay.json")[0], 200)

    def test_small_body_gets_an_answer(self) -> None:
        request = urllib.request.Request(self.relay.url + "relay.json", data=b"a=1", method="POST")
        try:
            urllib.request.urlopen(request, timeout=10)
            status = 200
        except urllib.error.HTTPError as e:
            status = e.code
        self.assertEqual(status, 405)  # only GET and HEAD


    def test_connections_per_address_are_bounded(self) -> None:
        """connections_per_address (default 32) HTTP connections from one address; more are closed at once."""
        import socket

        held = []
        for _ in range(32):
            held.append(socket.create_connection(("127.0.0.1", self.relay.web), timeout=10))
        self.addCleanup(lambda: [s.close() for s in held])
        extra = socket.create_connection(("127.0.0.1", self.relay.web), timeout=10)
        self.addCleanup(extra.close)
        try:
            extra.sendall(b"GET /relay.json HTTP/1.0\r\n\r\n")
            answer = extra.recv(100)
        except ConnectionResetError:
            answer = b""
        self.assertEqual(answer, b"")  # closed without an answer
        held[0].sendall(b"GET /relay.json HTTP/1.0\r\n\r\n")
        self.assertIn(b"200 OK", held[0].recv(100))
        for s in held:
            s.close()
        held.clear()
        time.sleep(0.3)
        self.assertEqual(get(self.relay.url + "relay.json")[0], 200)


class Configuration(SynchronousTestCase):
    def test_web_client_is_a_boolean_of_websocket_listeners_only(self) -> None:
        from relaychat.config import ConfigError, parse

        def listener(**options: object) -> dict:
            return {"listener": [{"kind": "websocket", "endpoint": "tcp:0", **options}]}

        self.assertEqual(parse(listener(web_client=True), base=ROOT).listeners[0].options["web_client"], True)
        with self.assertRaises(ConfigError) as raised:
            parse(listener(web_client="yes"), base=ROOT)
        self.assertIn("web_client: expected true or false", str(raised.exception))
        with self.assertRaises(ConfigError):
            parse({"listener": [{"kind": "tcp", "endpoint": "tcp:0", "web_client": True}]}, base=ROOT)

    def test_site_routes_the_websocket_path_and_serves_files_elsewhere(self) -> None:
        from twisted.web.test.requesthelper import DummyRequest

        from relaychat.server.webclient import StaticFiles, _Root

        websocket = object()
        files = StaticFiles(web.files(), "/ws")
        root = _Root(files, "/ws", websocket)  # type: ignore[arg-type]
        for path, expected in ((b"/ws", websocket), (b"/app.js", files), (b"/ws/x", files), (b"/", files)):
            request = DummyRequest(path.lstrip(b"/").split(b"/"))
            request.path = path
            self.assertIs(root.getChildWithDefault(path.split(b"/")[1], request), expected, path)


class OverTLS(SynchronousTestCase):
    """web_client on a wss:// listener: the page over https and the relay over wss in one TLS Site."""

    def test_page_and_websocket_over_tls(self) -> None:
        import ssl

        from websockets.sync.client import connect

        from relaychat.certificates import write_self_signed

        cert, key, _ = write_self_signed(Path(tempfile.mkdtemp()) / "tls", ["localhost"], ["127.0.0.1"])
        relay = Relay(tls=(cert, key))
        relay.start()
        self.addCleanup(relay.remove)
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"https://127.0.0.1:{relay.web}/relay.json", context=context, timeout=10) as response:
            self.assertEqual(response.read(), b'{"websocket": "/relay"}')
        with urllib.request.urlopen(f"https://127.0.0.1:{relay.web}/", context=context, timeout=10) as response:
            self.assertEqual(response.read(), web.files()["index.html"])
        with connect(f"wss://127.0.0.1:{relay.web}/relay", ssl=context, open_timeout=10) as ws:
            ws.send("HELLO 1")
            self.assertTrue(str(ws.recv(timeout=10)).startswith("OK HELLO 1 "))
            ws.send("PING tls")
            self.assertEqual(ws.recv(timeout=10), "OK PING tls")
