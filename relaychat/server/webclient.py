"""Serving the browser client beside a WebSocket listener (``web_client = true``).

One twisted.web ``Site`` holds both: the listener's WebSocket ``path`` hands
the connection to the same relay WebSocket adapter a plain ``websocket``
listener uses (:class:`TakeOver`), and every other GET is answered from
:func:`relaychat.web.files`, held in memory and served byte for byte, with
a strict Content-Security-Policy and no directory listing, no file system
access at request time, and nothing but the listed files.

``relay.json`` tells the page where its relay is (``{"websocket": PATH}``);
it is data, not code, so the code's :func:`~relaychat.web.digest` is the
same here and in ``relaychat-web`` (which serves the same files from the
user's own installed package and names another relay's WebSocket address).
"""

from __future__ import annotations

import io
import json
from typing import Any, Callable, Mapping, Optional

from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from relaychat import web

log = Logger()

REQUEST_TIMEOUT = 30  # seconds an HTTP connection may stay idle before upgrading
MAX_BODY = 1024  # bytes of request body held; the page only GETs, so any body is a misuse

_SECURITY_HEADERS = {
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"Cross-Origin-Opener-Policy": b"same-origin",
    b"Cross-Origin-Resource-Policy": b"same-origin",
    b"Cache-Control": b"no-cache",
    b"Permissions-Policy": b"camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


class BodylessRequest(Request):
    """A request whose body is bounded by :data:`MAX_BODY`, in memory.

    twisted.web buffers a request body of any length (in a temporary file
    past 100 KB), so a client could make the relay fill its disk. Nothing
    here reads a body: more than MAX_BODY bytes aborts the connection.
    ``gotLength``/``handleContentChunk`` are how HTTPChannel hands a body
    over (twisted.web.http's channel-to-request interface); a test sends a
    large body and fails if Twisted stops calling them.
    """

    _body = 0

    def gotLength(self, length: Optional[int]) -> None:
        self.content = io.BytesIO()
        self._body = 0

    def handleContentChunk(self, data: bytes) -> None:
        if self._body > MAX_BODY:
            return  # already aborting
        self._body += len(data)
        if self._body > MAX_BODY:
            transport = self.channel.transport if self.channel is not None else None
            if transport is not None:
                getattr(transport, "abortConnection", transport.loseConnection)()
            return
        assert self.content is not None  # gotLength came first
        self.content.write(data)


class StaticFiles(Resource):
    """The page's files from memory, plus ``relay.json``; 404 for anything else."""

    isLeaf = True

    def __init__(self, contents: Mapping[str, bytes], websocket: str, connect: str = "") -> None:
        super().__init__()
        self._contents = dict(contents)
        self._contents["relay.json"] = json.dumps({"websocket": websocket}).encode("utf-8")
        self._policy = web.content_security_policy(connect).encode("ascii")

    def render_GET(self, request: Request) -> bytes:
        name = request.path.decode("utf-8", "replace").lstrip("/") or "index.html"
        data = self._contents.get(name)
        for header, value in _SECURITY_HEADERS.items():
            request.setHeader(header, value)
        request.setHeader(b"Content-Security-Policy", self._policy)
        if data is None and name == "favicon.ico":
            request.setResponseCode(204)  # no icon; and no error in the browser's console
            return b""
        if data is None:
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"not found\n"
        suffix = name[name.rfind("."):]
        request.setHeader(b"Content-Type", web.TYPES.get(suffix, "application/octet-stream").encode("ascii"))
        return data

    render_HEAD = render_GET


class _Root(Resource):
    """Sends the WebSocket path to the WebSocket resource, everything else to the files."""

    def __init__(self, files: Resource, websocket_path: str, websocket: Optional[Resource]) -> None:
        super().__init__()
        self._files = files
        self._path = websocket_path
        self._websocket = websocket

    def getChildWithDefault(self, name: bytes, request: Request) -> Resource:
        if self._websocket is not None and request.path.decode("utf-8", "replace") == self._path:
            return self._websocket
        return self._files

    def render(self, request: Request) -> bytes:  # the bare "/" when the page is at the root
        page: bytes = self._files.render(request)
        return page


class BoundedConnections(WrappingFactory):
    """At most ``per_address`` connections from one address and ``total`` in
    all on a web-client listener. The hub bounds relay connections; HTTP
    connections fetching the page (and those waiting to upgrade) are
    bounded here, with the same figures (``connections_per_address``,
    ``max_connections``). A WebSocket keeps its place until it closes."""

    def __init__(self, wrapped: Any, per_address: int, total: int) -> None:
        super().__init__(wrapped)
        self.per_address = per_address
        self.total = total
        self._hosts: dict[ProtocolWrapper, str] = {}
        self._counts: dict[str, int] = {}

    # IProtocolFactory lets buildProtocol refuse (None); WrappingFactory's annotation does not.
    def buildProtocol(self, addr: Any) -> Optional[ProtocolWrapper]:  # type: ignore[override]
        host = str(getattr(addr, "host", addr))
        if len(self._hosts) >= self.total or self._counts.get(host, 0) >= self.per_address:
            return None  # refused: the connection is closed at once
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self._hosts[protocol] = host
            self._counts[host] = self._counts.get(host, 0) + 1
        return protocol

    def unregisterProtocol(self, protocol: ProtocolWrapper) -> None:
        super().unregisterProtocol(protocol)
        host = self._hosts.pop(protocol, None)
        if host is not None:
            self._counts[host] -= 1
            if not self._counts[host]:
                del self._counts[host]


class TakeOver(Resource):
    """The WebSocket path: the connection leaves twisted.web for the relay's
    WebSocket adapter (:class:`relaychat.server.websocket.WebSocketProtocol`).

    HTTPChannel registered itself as the transport's producer and runs an
    idle timer; the relay's adapter registers its own producer (flow
    control, protocol.rst section 8) and has its own timeouts, so both are
    released first, through public API. The adapter is then connected to
    the transport (which is always a ``ProtocolWrapper`` here: the
    connection bound, or Twisted's TLS) and given the request as it came,
    so its own handshake checks (path, ``Origin``, version) apply exactly
    as on a plain ``websocket`` listener.
    """

    isLeaf = True

    def __init__(self, factory: Any) -> None:
        super().__init__()
        self._factory = factory

    def render(self, request: Request) -> Any:
        channel = request.channel
        transport: Any = channel.transport
        if not isinstance(transport, ProtocolWrapper):  # pragma: no cover - with_page always wraps
            request.setResponseCode(500)
            return b""
        channel.setTimeout(None)
        transport.unregisterProducer()
        protocol = self._factory.buildProtocol(transport.getPeer())
        channel.transport = None
        transport.wrappedProtocol = protocol
        protocol.makeConnection(transport)
        head = [request.method + b" " + request.uri + b" HTTP/1.1"]
        for name, values in request.requestHeaders.getAllRawHeaders():
            head.extend(name + b": " + value for value in values)
        protocol.dataReceived(b"\r\n".join(head) + b"\r\n\r\n")
        return NOT_DONE_YET


def _websocket_resource(factory: Any) -> Resource:
    return TakeOver(factory)


def site(websocket_factory: Any, websocket_path: str) -> Site:
    """One Site: the files, and the WebSocket path to the relay factory."""
    contents = web.files()
    files = StaticFiles(contents, websocket_path)
    log.info("relaychat: web client at / beside WebSocket {path}; files sha256 {digest}",
             path=websocket_path, digest=web.digest(contents))
    result = Site(_Root(files, websocket_path, _websocket_resource(websocket_factory)), timeout=REQUEST_TIMEOUT)
    result.requestFactory = BodylessRequest
    result.displayTracebacks = False
    result.noisy = False
    return result


def with_page(websocket_factory: Any, websocket_path: str, secure: Callable[[Any], Any]) -> BoundedConnections:
    """What a ``websocket`` listener with ``web_client = true`` listens with:
    the :func:`site`, wrapped by ``secure`` (TLS or nothing), inside the
    relay's connection limits (outside TLS, so that twisted.web and the WebSocket adapter
    see the TLS transport itself)."""
    limits = websocket_factory.relay_factory.hub.limits
    result = BoundedConnections(secure(site(websocket_factory, websocket_path)),
                                limits.connections_per_address, limits.max_connections)
    result.noisy = False
    return result


def local_site(relay_url: str) -> Site:
    """The Site of ``relaychat-web``: the installed files, pointing at ``relay_url``."""
    contents = web.files()
    files = StaticFiles(contents, relay_url, connect=relay_url)
    result = Site(_Root(files, "", None), timeout=REQUEST_TIMEOUT)
    result.requestFactory = BodylessRequest
    result.displayTracebacks = False
    return result
