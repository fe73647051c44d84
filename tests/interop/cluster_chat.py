"""Two real browser pages chat through examples/cluster_chat.rs, one page per node, and one of them
resumes after its node restarts without losing what was said while it was away.

    python3 tests/interop/cluster_chat.py PORT_A PORT_B PROFILE_DIR [TIMEOUT_SECONDS]

The nodes must already be running (`cluster_chat PORT_A PORT_B --redis URL`). Prints one line per
step on stdout; exits 0 when every step passed, 1 with the failing step otherwise. The pages are the
example's own page, driven through its form and buttons (DevTools `Runtime.evaluate`), so what is
checked is what a person in front of two browser windows would see.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import Chromium  # noqa: E402

STATE = "document.getElementById('state').textContent"
LINES = "Array.from(document.querySelectorAll('#log > div')).map(d => d.textContent)"


class Failed(Exception):
    pass


def main():
    port_a, port_b, profile = sys.argv[1], sys.argv[2], sys.argv[3]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    deadline = time.monotonic() + timeout
    # A nonce keeps this run's lines apart from an earlier run's history in the same Redis.
    run = f"run{os.getpid()}"
    browser = Chromium(profile)

    def wait_for(page, what, predicate, expression):
        value = None
        while time.monotonic() < deadline:
            value = browser.evaluate(page, expression, deadline)
            if value is not None and predicate(value):
                return value
            time.sleep(0.1)
        raise Failed(f"timed out waiting for {what}; last seen: {value!r}")

    def say(page, text):
        script = (
            "(() => { const input = document.getElementById('text');"
            f" input.value = {json.dumps(text)};"
            " document.getElementById('form').requestSubmit(); return input.value === ''; })()"
        )
        if not browser.evaluate(page, script, deadline):
            raise Failed(f"the page did not send {text!r} (socket not open?)")

    def shown(page, text, node):
        """Waits until the page shows the line `[node N] text`; returns the page's lines."""
        suffix = f" [node {node}] {text}"
        return wait_for(
            page, f"{text!r} from node {node}",
            lambda lines: any(line.endswith(suffix) for line in lines), LINES,
        )

    def step(message):
        print(message, flush=True)

    try:
        a = browser.open(f"http://127.0.0.1:{port_a}/", deadline)
        b = browser.open(f"http://127.0.0.1:{port_b}/", deadline)
        for page, port in ((a, port_a), (b, port_b)):
            wait_for(page, f"the page on node {port} to connect",
                     lambda s: s.startswith("connected"), STATE)
        step(f"connected: one page on node {port_a}, one on node {port_b}")

        say(a, f"{run} hello from A")
        shown(b, f"{run} hello from A", port_a)
        shown(a, f"{run} hello from A", port_a)
        say(b, f"{run} hello from B")
        shown(a, f"{run} hello from B", port_b)
        step("chat across nodes: each page sees the other's message and its own")

        browser.evaluate(b, "document.getElementById('restart').click(), true", deadline)
        wait_for(b, f"node {port_b} to go down", lambda s: s.startswith("disconnected"), STATE)
        missed = [f"{run} while B was away {i}" for i in range(1, 6)]
        for text in missed:
            say(a, text)
            shown(a, text, port_a)  # published: Redis gave it a position
        down = browser.evaluate(b, STATE, deadline)
        if not down.startswith("disconnected"):
            raise Failed(f"node {port_b} came back before A finished sending: {down!r}")
        step(f"node {port_b} restarting; five messages sent on node {port_a} meanwhile")

        wait_for(b, "the page on B to resume", lambda s: s.startswith("connected, resumed after"),
                 STATE)
        lines = shown(b, missed[-1], port_a)
        ours = [line for line in lines if line.split(" ", 3)[-1].startswith(f"{run} ")]
        got = [line.split(" ", 3)[-1] for line in ours]
        expected = [f"{run} hello from A", f"{run} hello from B", *missed]
        if got != expected:
            raise Failed(f"B's log after resuming is {got!r}, expected {expected!r}")
        positions = [line.split(" ", 1)[0] for line in ours]
        offsets = [int(p.split(":")[1]) for p in positions]
        if len({p.split(":")[0] for p in positions}) != 1 or offsets != sorted(set(offsets)):
            raise Failed(f"positions not one epoch, strictly increasing: {positions}")
        step(f"resumed after the restart: {len(missed)} missed messages, each once, in order "
             f"(positions {positions[0]} .. {positions[-1]})")

        say(b, f"{run} B is back")
        shown(a, f"{run} B is back", port_b)
        step("chat across nodes again after the restart")
        print("cluster chat ok")
        return 0
    except Failed as failure:
        print(f"FAILED: {failure}")
        return 1
    finally:
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
