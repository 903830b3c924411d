"""The browser client: static files (HTML, CSS, ES modules) and how they are served.

Everything under ``static/`` is served byte for byte, by the daemon on a
``websocket`` listener with ``web_client = true`` and by ``relaychat-web``
from the user's own installed package; :func:`digest` names the set, so
anyone can compare what a relay serves with what they installed. The
page's ``index.html`` carries a subresource-integrity hash for every module
(in its import map) and for the stylesheet; :func:`render_index` fills them
in from the files, and tests check the committed page is up to date. The
page's own modules are checked by the browser through the import map; the
Web Worker's modules, which no import map reaches, by ``workerload.js``
against the same hashes before any of them runs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Mapping

STATIC = Path(__file__).resolve().parent / "static"
ENTRY = "app.js"
STYLESHEET = "app.css"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
}
_IMPORTMAP = re.compile(r'(<script type="importmap">)(.*?)(</script>)', re.S)


def _sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode("ascii")


def _servable(path: Path) -> bool:
    return path.is_file() and path.suffix in TYPES


def module_files() -> list[str]:
    """Every ES module the page may load, as paths relative to ``static/``."""
    return sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*.js") if _servable(p))


def render_index(template: str, contents: Mapping[str, bytes] | None = None) -> str:
    """``index.html`` with the import map and integrity attributes filled in from
    the files (or from ``contents``, path -> bytes, as a test serves them)."""
    def read(name: str) -> bytes:
        return (STATIC / name).read_bytes() if contents is None else contents[name]
    modules = module_files() if contents is None else sorted(n for n in contents if n.endswith(".js"))
    integrity = {f"./{name}": _sri(read(name)) for name in modules}
    import_map = {
        "imports": {
            "@noble/hashes/": "./vendor/node_modules/@noble/hashes/",
            "@noble/curves/": "./vendor/node_modules/@noble/curves/",
            "@noble/ciphers/": "./vendor/node_modules/@noble/ciphers/",
        },
        "integrity": integrity,
    }
    text = _IMPORTMAP.sub(lambda m: m.group(1) + json.dumps(import_map, indent=1, sort_keys=True) + m.group(3), template)
    text = re.sub(r'(src="app\.js" integrity=")[^"]*(")', lambda m: m.group(1) + integrity["./app.js"] + m.group(2), text)
    css = _sri(read(STYLESHEET))
    return re.sub(r'(href="app\.css" integrity=")[^"]*(")', lambda m: m.group(1) + css + m.group(2), text)


def write_index() -> bool:
    """Refresh the hashes in ``static/index.html``; True if it changed."""
    path = STATIC / "index.html"
    old = path.read_text(encoding="utf-8")
    new = render_index(old)
    if new != old:
        path.write_text(new, encoding="utf-8")
    return new != old


def import_map_hash(index: bytes) -> str:
    """The CSP source for the page's one inline script, its import map (not executable)."""
    match = _IMPORTMAP.search(index.decode("utf-8"))
    assert match is not None, "index.html has no import map"
    return "'sha256-" + base64.b64encode(hashlib.sha256(match.group(2).encode("utf-8")).digest()).decode("ascii") + "'"


@lru_cache(maxsize=1)
def files() -> Mapping[str, bytes]:
    """Path (relative, posix) -> bytes of every file served, read once."""
    return {p.relative_to(STATIC).as_posix(): p.read_bytes() for p in sorted(STATIC.rglob("*")) if _servable(p)}


def digest(contents: Mapping[str, bytes] | None = None) -> str:
    """SHA-256 over "path sha256" lines of every served file: one value to compare."""
    contents = files() if contents is None else contents
    listing = "".join(f"{name} {hashlib.sha256(data).hexdigest()}\n" for name, data in sorted(contents.items()))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def content_security_policy(connect: str = "", index: bytes | None = None) -> str:
    """Strict CSP for the page: only this origin's files, the import map by hash,
    no inline script or style, no framing, no third-party request of any kind.

    ``blob:`` scripts are the worker's modules: workerload.js makes them from
    bytes it fetched and checked against the import map's hashes (a worker
    has no import map, and ``new Worker`` no integrity). Only page code can
    make a blob: URL, and that code is itself integrity-checked; a worker
    from this origin's files directly is not allowed at all.
    """
    script = "'self' blob: " + import_map_hash((index if index is not None else files()["index.html"]))
    connect_src = "'self'" + (f" {connect}" if connect else "")
    return (f"default-src 'none'; script-src {script}; style-src 'self'; connect-src {connect_src}; "
            "worker-src blob:; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

