"""A headless Chromium driven over the DevTools protocol on a pipe, and a static server.

No websocket client and no Playwright browser download: Chromium started with
--remote-debugging-pipe reads JSON commands on its file descriptor 3 and writes
replies and events on 4, each message ending in a NUL byte. Debian's `chromium`
package is enough (`apt-get install -y chromium`).

    python tests/chromium.py SITE OUT.png [--seed N]   # a screenshot of a web export
"""

import argparse
import base64
import contextlib
import fcntl
import functools
import http.server
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

# Without the background-networking flags Chromium waits on the closed network.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)


def executable() -> str | None:
    """The Chromium on PATH, if any."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """One headless browser with a fresh profile; `close()` (or `with`) ends it."""

    def __init__(self, path: str | None = None):
        path = path or executable()
        if path is None:
            raise FileNotFoundError("no chromium on PATH: apt-get install -y chromium")
        self.profile = tempfile.mkdtemp(prefix="keras_gen_chromium_")
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        commands_read, replies_write = _above_4(commands_read), _above_4(replies_write)
        # A small Python puts the pipe ends at 3 and 4, where Chromium looks for
        # them, and becomes Chromium (a POSIX shell takes only descriptors 0-9).
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-S",
                "-c",
                _AT_3_AND_4,
                str(commands_read),
                str(replies_write),
                path,
                *FLAGS,
                f"--user-data-dir={self.profile}",
            ],
            pass_fds=(commands_read, replies_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []  # every event received, for diagnosis

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, method: str, session: str | None = None, timeout=60, **params):
        """Send one command and return its result; raise on a protocol error."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        reply = self._receive(lambda m: m.get("id") == self._next_id, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait_event(self, method: str, session: str, timeout=60) -> dict:
        """The next event `method` of `session` (or one already received)."""
        for event in self.events:
            if event.get("method") == method and event.get("sessionId") == session:
                self.events.remove(event)
                return event
        return self._receive(
            lambda m: m.get("method") == method and m.get("sessionId") == session,
            timeout,
            keep=False,
        )

    def _receive(self, wanted, timeout, keep=True) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if wanted(message):
                    return message
                if "method" in message:
                    self.events.append(message)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer in {timeout} s")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium exited")
            self._buffer += chunk

    def open(self, url: str, width=1000, height=800, timeout=60) -> str:
        """A new tab showing `url` once loaded; returns its session id."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page.enable", "Runtime.enable"):
            self.call(domain, session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.call("Page.navigate", session, url=url)
        self.wait_event("Page.loadEventFired", session, timeout)
        return session

    def evaluate(self, session: str, expression: str, timeout=60):
        """The JSON value of a JavaScript expression (awaited if it is a promise)."""
        reply = self.call(
            "Runtime.evaluate",
            session,
            timeout=timeout,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout=60):
        """The value of `expression` once it is truthy, polled in the page."""
        poll = (
            "(async () => { for (;;) { const value = (" + expression + "); "
            "if (value) return value; "
            "await new Promise((resolve) => setTimeout(resolve, 20)); } })()"
        )
        return self.evaluate(session, poll, timeout)

    def screenshot(self, session: str) -> bytes:
        """The tab's viewport as PNG bytes."""
        data = self.call("Page.captureScreenshot", session, format="png")["data"]
        return base64.b64decode(data)

    def console(self) -> list[str]:
        """What pages logged and threw so far: for failure messages."""
        lines = []
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.consoleAPICalled":
                text = " ".join(
                    str(a.get("value", a.get("description"))) for a in params["args"]
                )
                lines.append(f"console.{params['type']}: {text}")
            elif event.get("method") == "Runtime.exceptionThrown":
                lines.append(f"exception: {params['exceptionDetails']}")
        return lines

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for descriptor in (self._commands, self._replies):
            with contextlib.suppress(OSError):
                os.close(descriptor)
        shutil.rmtree(self.profile, ignore_errors=True)


_AT_3_AND_4 = """
import os, sys
commands, replies = int(sys.argv[1]), int(sys.argv[2])
os.dup2(commands, 3)
os.dup2(replies, 4)
os.close(commands)
os.close(replies)
os.execv(sys.argv[3], sys.argv[3:])
"""


def _above_4(descriptor: int) -> int:
    """The same pipe end on a descriptor above 4, so that moving it to 3 or 4 in the
    child cannot overwrite the other end."""
    moved = fcntl.fcntl(descriptor, fcntl.F_DUPFD_CLOEXEC, 5)
    os.close(descriptor)
    return moved


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def serving(folder: str | os.PathLike) -> Iterator[str]:
    """`python -m http.server` over `folder` in a thread; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


READY = "document.body.dataset.state === 'ready' || window.keras_gen_error"


def main() -> int:
    parser = argparse.ArgumentParser(description="Screenshot a keras_gen web export.")
    parser.add_argument("site", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=620)
    args = parser.parse_args()
    with serving(args.site) as url, Chromium() as browser:
        session = browser.open(f"{url}?seed={args.seed}", args.width, args.height)
        browser.wait_for(session, READY, timeout=120)
        error = browser.evaluate(session, "window.keras_gen_error || ''")
        if error:
            print(f"the page failed: {error}", file=sys.stderr)
            return 1
        args.output.write_bytes(browser.screenshot(session))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
