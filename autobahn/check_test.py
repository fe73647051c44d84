#!/usr/bin/env python3
"""Tests of check.py's rules on made-up reports. Standard library only; Python 3 or 2.7."""
from __future__ import print_function

import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402

CLEAN = {"wasClean": True, "wasCloseHandshakeTimeout": False,
         "wasServerConnectionDropTimeout": False, "wasOpenHandshakeTimeout": False,
         "remoteCloseCode": 1000}


class Report(object):
    """A report directory with one agent's cases: {id: (behavior, behaviorClose, detail)}."""

    def __init__(self, cases):
        self.dir = tempfile.mkdtemp()
        index = {}
        for cid, (b, bc, detail) in cases.items():
            name = "a_case_%s.json" % cid.replace(".", "_")
            index[cid] = {"behavior": b, "behaviorClose": bc, "duration": 1,
                          "remoteCloseCode": detail.get("remoteCloseCode"), "reportfile": name}
            with open(os.path.join(self.dir, name), "w") as f:
                json.dump(dict(detail, description="case " + cid), f)
        with open(os.path.join(self.dir, "index.json"), "w") as f:
            json.dump({"a": index}, f)

    def check(self, *args):
        devnull = open(os.devnull, "w")
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = devnull
        try:
            return check.main([self.dir] + list(args))
        finally:
            sys.stdout, sys.stderr = stdout, stderr
            devnull.close()

    def close(self):
        shutil.rmtree(self.dir)


class CheckTest(unittest.TestCase):
    def status(self, cases, *args):
        report = Report(cases)
        try:
            return report.check(*args)
        finally:
            report.close()

    def test_passes_only_when_both_verdicts_are_ok(self):
        self.assertEqual(self.status({"1.1.1": ("OK", "OK", CLEAN)}), 0)
        self.assertEqual(self.status({"1.1.1": ("OK", "UNCLEAN", CLEAN)}), 1)
        self.assertEqual(self.status({"1.1.1": ("FAILED", "OK", CLEAN)}), 1)
        self.assertEqual(self.status({"5.1": ("WRONG CODE", "OK", CLEAN)}), 1)
        self.assertEqual(self.status({"7.3.6": ("OK", "FAILED BY CLIENT", CLEAN)}), 1)

    def test_never_accepts_non_strict(self):
        self.assertEqual(self.status({"6.4.3": ("NON-STRICT", "OK", CLEAN)}), 1)

    def test_accepts_informational_only_with_a_clean_close(self):
        self.assertEqual(self.status({"7.1.6": ("INFORMATIONAL", "INFORMATIONAL", CLEAN)}), 0)
        for broken in ({"wasClean": False}, {"wasCloseHandshakeTimeout": True},
                       {"remoteCloseCode": None}):
            detail = dict(CLEAN, **broken)
            self.assertEqual(self.status({"7.1.6": ("INFORMATIONAL", "OK", detail)}), 1)

    def test_never_accepts_unimplemented_not_even_for_deflate_cases(self):
        for case in ("12.1.1", "13.7.18", "9.1.1"):
            self.assertEqual(self.status({case: ("UNIMPLEMENTED", "OK", CLEAN)}), 1)
        # The option that once allowed it is gone: asking for it is a usage error.
        with self.assertRaises(SystemExit):
            self.status({"12.1.1": ("UNIMPLEMENTED", "OK", CLEAN)},
                        "--allow-unimplemented-deflate")

    def test_fails_a_report_of_the_wrong_size(self):
        cases = {"1.1.1": ("OK", "OK", CLEAN)}
        self.assertEqual(self.status(cases, "--expect-cases", "1"), 0)
        self.assertEqual(self.status(cases, "--expect-cases", "517"), 2)

    def test_fails_an_unknown_agent_or_a_missing_report(self):
        self.assertEqual(self.status({"1.1.1": ("OK", "OK", CLEAN)}, "--agent", "b"), 2)
        empty = tempfile.mkdtemp()
        try:
            devnull = open(os.devnull, "w")
            stderr, sys.stderr = sys.stderr, devnull
            try:
                self.assertEqual(check.main([empty]), 2)
            finally:
                sys.stderr = stderr
                devnull.close()
        finally:
            shutil.rmtree(empty)


if __name__ == "__main__":
    unittest.main()
