"""Headless Chromium for the browser-client tests, found by accessible names.

Debian's ``chromium`` and ``chromium-driver`` through selenium (which then
downloads nothing). Controls are found as a person using a screen reader
would find them: by their accessible name (a ``<label>``, ``aria-label`` or
a button's text), and the match is confirmed with the browser's own
computed name (WebDriver "Get Computed Label").
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from twisted.trial.unittest import SkipTest

from tests.daemon import Daemon

CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
    # no traffic of its own: nothing but the page's requests leave the browser
    "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
    "--disable-sync", "--no-first-run", "--metrics-recording-only", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--window-size=1100,900",
)


def have_browser() -> None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        raise SkipTest("selenium is not installed") from None
    if not Path(CHROMEDRIVER).exists() or shutil.which("chromium") is None:
        raise SkipTest("chromium and chromium-driver are not installed (Debian: chromium chromium-driver)")


def _xpath_literal(text: str) -> str:
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    raise ValueError("names with both quote characters are not supported")


class Browser:
    """One Chromium with its own profile (so its own IndexedDB)."""

    def __init__(self, size: tuple[int, int] = (1100, 900)) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="relaychat-chromium-")
        options = webdriver.ChromeOptions()
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--window-size={size[0]},{size[1]}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # -- pages ---------------------------------------------------------------

    def fresh(self, url: str) -> None:
        """Open ``url`` with nothing stored for it: a first visit."""
        self.driver.get(url)
        self.driver.execute_async_script(
            "const done = arguments[0];"
            "const r = indexedDB.deleteDatabase('relaychat'); r.onsuccess = r.onerror = r.onblocked = () => done();")
        self.driver.get(url)

    def stored(self, key: str, read: str) -> Any:
        """``read`` (a JS function, maybe async) applied to the page's IndexedDB record ``key``."""
        return self.driver.execute_async_script(f"""
            const done = arguments[0];
            const open = indexedDB.open('relaychat', 1);
            open.onsuccess = () => {{
              const r = open.result.transaction('kv').objectStore('kv').get({key!r});
              r.onsuccess = async () => {{ open.result.close(); done(await ({read})(r.result)); }};
            }};""")

    def sign_in(self, url: str, nick: str, passphrase: str = "") -> None:
        self.fresh(url)
        self.type("Nickname", nick)
        if passphrase:
            self.type("Passphrase (optional)", passphrase)
        self.press("Sign in")
        self.wait_text("Connection", f"Connected to the relay as {nick}.")

    # -- finding by accessible name -----------------------------------------

    def find(self, name: str, timeout: float = 15.0, tags: tuple[str, ...] = ()) -> Any:
        from selenium.webdriver.common.by import By

        literal = _xpath_literal(name)
        xpath = (f"//*[@aria-label={literal}] | //*[@id=//label[normalize-space()={literal}]/@for]"
                 f" | //button[normalize-space()={literal}] | //*[@aria-labelledby=//*[normalize-space()={literal}]/@id]")
        deadline = time.monotonic() + timeout
        while True:
            for element in self.driver.find_elements(By.XPATH, xpath):
                try:
                    if tags and element.tag_name not in tags:
                        continue
                    if element.is_displayed() and element.accessible_name == name:
                        return element
                except Exception:  # stale: the page re-rendered it
                    continue
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing named {name!r} is shown")
            time.sleep(0.05)

    def type(self, name: str, text: str) -> None:
        element = self.find(name, tags=("input", "textarea"))
        element.clear()
        if text:
            # chromedriver cannot type characters outside the BMP, and Enter would send: set those directly
            if any(ord(c) > 0xFFFF or c == "\n" for c in text):
                self.driver.execute_script("arguments[0].value = arguments[1];", element, text)
            else:
                element.send_keys(text)

    def press(self, name: str) -> None:
        self.find(name, tags=("button",)).click()

    def text(self, name: str) -> str:
        return str(self.find(name).text)

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        last: Optional[BaseException] = None
        while time.monotonic() < deadline:
            try:
                result = predicate()
                if result:
                    return result
            except Exception as e:  # stale elements while the page re-renders
                last = e
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")

    def wait_text(self, name: str, contains: str, timeout: float = 20.0) -> str:
        return str(self.wait(lambda: contains in self.text(name) and self.text(name), f"{contains!r} in {name!r}", timeout))

    def messages(self) -> list[str]:
        from selenium.webdriver.common.by import By

        return [li.text for li in self.find("Messages").find_elements(By.TAG_NAME, "li")]

    def requests(self) -> list[str]:
        """Every URL the browser requested since the last call (performance log)."""
        import json

        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls


class Relay:
    """``twistd relaychat`` with a TCP listener and a web-client WebSocket listener."""

    def __init__(self, limits: str = "", tls: tuple[Path, Path] | None = None) -> None:
        self.limits = limits  # extra lines for [limits]
        self.tls = tls  # (certificate, private_key): the web listener is then https/wss
        self.home = Path(tempfile.mkdtemp(prefix="relaychat-web-"))
        self.tcp = self.web = 0
        self.daemon: Daemon | None = None

    def start(self) -> None:
        config = self.home / "relay.toml"
        config.write_text(
            f'[relay]\ndata_dir = "{self.home / "data"}"\n'
            f'[[listener]]\nkind = "tcp"\nendpoint = "tcp:{self.tcp}:interface=127.0.0.1"\n'
            f'[[listener]]\nkind = "websocket"\nendpoint = "tcp:{self.web}:interface=127.0.0.1"\nweb_client = true\n'
            + (f'certificate = "{self.tls[0]}"\nprivate_key = "{self.tls[1]}"\n' if self.tls else "")
            +             "[limits]\npow_bits = 8\n" + self.limits)
        self.daemon = Daemon("--config", str(config), cwd=str(self.home))
        self.tcp, self.web = self.daemon.start(listeners=2)

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def crash(self) -> None:
        """Stop without a word (SIGKILL), as a crash or a lost machine does; SIGTERM would drain."""
        if self.daemon is not None and self.daemon.process is not None:
            self.daemon.process.kill()
            self.daemon.wait()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web}/"
