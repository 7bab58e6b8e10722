"""Drive Debian's headless Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe):
no extra Python dependency, no port. Opens one page, records what the page did (script
exceptions, console errors, every request it made), evaluates expressions, and takes a
full-page screenshot.

    python -m tests.chromium_cdp report.html shot.png     # a screenshot
"""

from __future__ import annotations

import base64
import fcntl
import json
import math
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio",
         "--remote-debugging-pipe"]
TIMEOUT_S = 60.0


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageLog:
    exceptions: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


class Chromium:
    """One headless Chromium with a fresh profile; `open(url)` loads one page in a new tab."""

    def __init__(self, executable: str, profile: Path, width: int = 1280, height: int = 900) -> None:
        self.width, self.height = width, height
        cmd_r, cmd_w = os.pipe()  # we write commands; Chromium reads them on its fd 3
        out_r, out_w = os.pipe()  # Chromium writes replies and events on its fd 4; we read
        # park the child's ends above 10 so that placing them on 3 and 4 cannot clobber each other
        child_r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(out_w, fcntl.F_DUPFD_CLOEXEC, 10)

        def child_fds() -> None:  # in the child, before exec: dup2 leaves 3 and 4 inheritable
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        self.proc = subprocess.Popen([executable, *FLAGS, f"--user-data-dir={profile}",
                                      f"--window-size={width},{height}", "about:blank"],
                                     close_fds=False, preexec_fn=child_fds,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (cmd_r, out_w, child_r, child_w):
            os.close(fd)
        self._out = os.fdopen(cmd_w, "wb", buffering=0)
        self._in = os.fdopen(out_r, "rb", buffering=0)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.session: str | None = None
        self.log = PageLog()

    def _read(self) -> None:
        buf = b""
        while chunk := self._in.read(1 << 16):
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()
                else:
                    self._events.put(msg)

    def call(self, method: str, params: dict[str, Any] | None = None, session: bool = True) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self._out.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        with self._cond:
            while self._next_id not in self._replies:
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"Chromium did not answer {method} in {TIMEOUT_S:.0f} s")
            reply = self._replies.pop(self._next_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def _drain(self, until: str | None = None, timeout: float = TIMEOUT_S) -> None:
        """Record page events; return when `until` arrives (or at once when the queue is empty)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                ev = self._events.get(timeout=max(0.05, deadline - time.monotonic()) if until else 0.2)
            except queue.Empty:
                if until:
                    raise TimeoutError(f"no {until} in {timeout:.0f} s") from None
                return
            self._record(ev)
            if until and ev.get("method") == until:
                return

    def _record(self, ev: dict[str, Any]) -> None:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self.log.exceptions.append(d.get("exception", {}).get("description") or d.get("text", ""))
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.log.console_errors.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            self.log.console_errors.append(f"{p['entry'].get('source')}: {p['entry'].get('text')}")
        elif method == "Network.requestWillBeSent":
            self.log.requests.append(p["request"]["url"])

    def open(self, url: str) -> PageLog:
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                         "deviceScaleFactor": 1, "mobile": False})
        self._drain()
        self.log = PageLog()
        self.call("Page.navigate", {"url": url})
        self._drain(until="Page.loadEventFired")
        time.sleep(0.5)  # anything the page would fetch after load
        self._drain()
        return self.log

    def settle(self) -> PageLog:
        """Record what the page did since the last look (after an interaction)."""
        time.sleep(0.2)
        self._drain()
        return self.log

    def evaluate(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluating {expression[:60]!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """The whole page (not just the viewport) as PNG."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        height = min(math.ceil(size["height"]), 16000)
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": height,
                                                         "deviceScaleFactor": 1, "mobile": False})
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                         "deviceScaleFactor": 1, "mobile": False})
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False)
        except (RuntimeError, TimeoutError, OSError):
            self.proc.kill()  # it did not close cleanly: make sure it goes
        finally:
            self.proc.wait(timeout=30)
            self._out.close()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    exe = chromium_path()
    if exe is None:
        sys.exit("chromium not found")
    with tempfile.TemporaryDirectory(prefix="vidtrack-chromium-") as prof, Chromium(exe, Path(prof)) as browser:
        log = browser.open(Path(sys.argv[1]).resolve().as_uri())
        print(browser.screenshot(Path(sys.argv[2])), log)
