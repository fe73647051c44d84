"""Load a page in headless Chromium and wait, in real time, until its `#check` paragraph settles.

    python3 tests/interop/browser.py URL PROFILE_DIR [TIMEOUT_SECONDS]

Prints the paragraph's final text on stdout (or `timeout: <last text>`), Chromium's own output goes
to stderr. Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
JSON messages separated by NUL bytes, commands on fd 3, replies on fd 4), so only the standard
library is needed.

Why not `--dump-dom --virtual-time-budget`: virtual time does not wait for WebSocket traffic, so on
a loaded machine the DOM was sometimes dumped before the echo came back.
"""

import fcntl
import json
import os
import subprocess
import sys
import time

PENDING = "checking the echo…"


class DevTools:
    def __init__(self, to_browser, from_browser):
        self.to_browser = to_browser
        self.from_browser = from_browser
        self.buffer = b""
        self.next_id = 0

    def call(self, method, params=None, session=None, deadline=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline):
        while b"\0" not in self.buffer:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.from_browser, 65536)
            if not chunk:
                raise EOFError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)


class Chromium:
    """Headless Chromium with a DevTools session per page: `open(url)`, then `evaluate(page, js)`."""

    def __init__(self, profile):
        # fd 3 is what Chromium reads commands from, fd 4 what it writes replies to.
        commands_read, commands_write = os.pipe()
        replies_read, replies_write = os.pipe()
        # Copies above 4, so that moving them onto 3 and 4 in the child cannot clobber one another.
        child_read = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
        child_write = fcntl.fcntl(replies_write, fcntl.F_DUPFD, 10)
        for fd in (commands_read, replies_write):
            os.close(fd)

        def wire_fds():
            os.dup2(child_read, 3)
            os.dup2(child_write, 4)

        self.process = subprocess.Popen(
            [
                "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={profile}", "--remote-debugging-pipe",
                "about:blank",
            ],
            stdout=sys.stderr,
            preexec_fn=wire_fds,
            # Kept open through exec: subprocess closes the others after `wire_fds` has run.
            pass_fds=(3, 4, child_read, child_write),
        )
        os.close(child_read)
        os.close(child_write)
        self.devtools = DevTools(commands_write, replies_read)

    def open(self, url, deadline):
        """A new page (tab) loading `url`; returns its session id."""
        target = self.devtools.call("Target.createTarget", {"url": url}, deadline=deadline)
        return self.devtools.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
            deadline=deadline,
        )["sessionId"]

    def evaluate(self, page, expression, deadline):
        """The value of a JavaScript expression in the page (JSON-serialisable values only)."""
        result = self.devtools.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True},
            session=page, deadline=deadline,
        )
        return result.get("result", {}).get("value")

    def close(self):
        try:
            self.devtools.call("Browser.close", deadline=time.monotonic() + 5)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main():
    url, profile = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    browser = Chromium(profile)
    deadline = time.monotonic() + timeout
    text = None
    try:
        page = browser.open(url, deadline)
        expression = "(document.getElementById('check') || {}).textContent || null"
        while time.monotonic() < deadline:
            text = browser.evaluate(page, expression, deadline)
            if text and text != PENDING:
                print(text)
                return 0
            time.sleep(0.1)
        print(f"timeout: {text}")
        return 1
    finally:
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
