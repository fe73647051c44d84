#!/usr/bin/env python3
"""Strict checker for an Autobahn|Testsuite report (index.json) of one agent.

    check.py REPORT [--agent NAME] [--label ROLE] [--expect-cases N]
             [--timings] [--max-details N]

REPORT is index.json or the directory holding it. Standard library only; Python 3 or 2.7.

Every case has two verdicts, `behavior` (what the peer did with the data) and `behaviorClose`
(the closing handshake). A case passes only when each of them is:

  OK             always;
  INFORMATIONAL  only when the connection was closed cleanly: the case file says wasClean, no
                 handshake or close timeout happened, and the peer sent a close frame (7.1.6,
                 7.13.1, 7.13.2: the suite grades no outcome there, so the close is what counts).

Everything else fails: UNIMPLEMENTED (a permessage-deflate case, 12.* or 13.*, that did not
negotiate compression), NON-STRICT, FAILED, WRONG CODE, UNCLEAN, FAILED BY CLIENT, NO_CLOSE...
The report must also hold exactly --expect-cases cases, if given (a crashed peer leaves a short
report that would otherwise look clean).

The last line printed is `[ROLE: ]N passed, M failed`.
Exit status: 0 every case passes, 1 some case fails, 2 the report is missing, unreadable, of
another agent or of the wrong size.
"""
from __future__ import print_function

import argparse
import collections
import datetime
import json
import os
import sys

CLEAN_FLAGS_FALSE = ("wasCloseHandshakeTimeout", "wasServerConnectionDropTimeout",
                     "wasOpenHandshakeTimeout")


def case_key(case_id):
    """Sort '9.10.2' after '9.2.1'."""
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]


def load_detail(report_dir, entry):
    name = entry.get("reportfile")
    if not name:
        return {}
    try:
        with open(os.path.join(report_dir, name)) as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return {}


def closed_cleanly(detail):
    """Whether the case file shows a clean close with a close frame from the peer."""
    return (detail.get("wasClean") is True
            and not any(detail.get(flag) for flag in CLEAN_FLAGS_FALSE)
            and detail.get("remoteCloseCode") is not None)


def verdict(entry, detail_of):
    """'pass' or a failure reason."""
    behavior, close = entry.get("behavior"), entry.get("behaviorClose")
    reasons = []
    for what, value in (("behavior", behavior), ("behaviorClose", close)):
        if value == "OK":
            continue
        if value == "INFORMATIONAL":
            if closed_cleanly(detail_of()):
                continue
            reasons.append("%s INFORMATIONAL without a clean close" % what)
        else:
            reasons.append("%s %s" % (what, value))
    return "; ".join(reasons) if reasons else "pass"


def shorten(text, n=200):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 3] + "..."


def parse_started(s):
    try:
        return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")
    except (TypeError, ValueError):
        return None


def print_timings(report_dir, cases):
    groups = collections.OrderedDict()
    for cid in sorted(cases, key=case_key):
        groups.setdefault(cid.split(".")[0], []).append(cid)
    starts, ends = [], []
    print("time per group (sum of case durations):")
    for group, ids in groups.items():
        total = sum(int(cases[c].get("duration") or 0) for c in ids)
        slowest = max(ids, key=lambda c: int(cases[c].get("duration") or 0))
        print("  %-4s %4d cases %7.1fs  (slowest %s: %.1fs)" % (
            group + ".*", len(ids), total / 1000.0, slowest,
            int(cases[slowest].get("duration") or 0) / 1000.0))
        for c in ids:
            started = parse_started(load_detail(report_dir, cases[c]).get("started"))
            if started is not None:
                starts.append(started)
                ends.append(started + datetime.timedelta(
                    milliseconds=int(cases[c].get("duration") or 0)))
    if starts:
        print("  first case start to last case end: %.1fs"
              % (max(ends) - min(starts)).total_seconds())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("report", help="index.json or the directory holding it")
    p.add_argument("--agent", help="agent to check (required if the report holds several)")
    p.add_argument("--label", default="", help="prefix of the summary line, e.g. server")
    p.add_argument("--expect-cases", type=int, help="the report must hold exactly this many cases")
    p.add_argument("--timings", action="store_true", help="print the time spent per case group")
    p.add_argument("--max-details", type=int, default=30, metavar="N",
                   help="describe the first N failures in full (default 30)")
    a = p.parse_args(argv)
    prefix = a.label + ": " if a.label else ""

    index = os.path.join(a.report, "index.json") if os.path.isdir(a.report) else a.report
    report_dir = os.path.dirname(os.path.abspath(index))
    try:
        with open(index) as f:
            data = json.load(f)
    except (IOError, OSError, ValueError) as e:
        print("check.py: cannot read %s: %s" % (index, e), file=sys.stderr)
        return 2
    if not isinstance(data, dict) or not data:
        print("check.py: %s holds no agent" % index, file=sys.stderr)
        return 2
    agent = a.agent
    if agent is None:
        if len(data) != 1:
            print("check.py: several agents in %s, pick one with --agent: %s"
                  % (index, ", ".join(sorted(data))), file=sys.stderr)
            return 2
        agent = next(iter(data))
    if agent not in data:
        print("check.py: agent %r is not in %s (agents: %s)"
              % (agent, index, ", ".join(sorted(data))), file=sys.stderr)
        return 2
    cases = data[agent]

    behavior = collections.Counter(c.get("behavior") for c in cases.values())
    close = collections.Counter(c.get("behaviorClose") for c in cases.values())
    print("report: %s (agent %s, %d cases)" % (index, agent, len(cases)))
    print("behavior:      " + ", ".join("%s %d" % kv for kv in sorted(behavior.items())))
    print("behaviorClose: " + ", ".join("%s %d" % kv for kv in sorted(close.items())))
    if a.timings:
        print_timings(report_dir, cases)

    passed = 0
    failures = []
    for cid in sorted(cases, key=case_key):
        entry = cases[cid]
        v = verdict(entry, lambda: load_detail(report_dir, entry))
        if v == "pass":
            passed += 1
        else:
            failures.append((cid, v))

    for n, (cid, reason) in enumerate(failures):
        entry = cases[cid]
        print("FAIL %-9s %s (remote close code %s)" % (cid, reason, entry.get("remoteCloseCode")))
        if n < a.max_details:
            d = load_detail(report_dir, entry)
            for key, label in (("description", "case"), ("expectation", "expected"),
                               ("result", "result"), ("resultClose", "close")):
                if d.get(key):
                    print("     %-9s %s" % (label + ":", shorten(d[key])))
            if entry.get("reportfile"):
                print("     file:     %s" % os.path.join(report_dir, entry["reportfile"]))

    status = 1 if failures else 0
    if a.expect_cases is not None and len(cases) != a.expect_cases:
        print("check.py: the report holds %d cases, expected %d (did the peer crash?)"
              % (len(cases), a.expect_cases), file=sys.stderr)
        status = 2
    print("%s%d passed, %d failed" % (prefix, passed, len(failures)))
    return status


if __name__ == "__main__":
    sys.exit(main())
