"""Unit tests of standin-gcloud's `run` group: gcloud's traffic arithmetic, and the CLI's
flag and error handling. Run by tests/it/cloudrun.rs (`python3 -m unittest` here)."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run_cmd  # noqa: E402
from run_cmd import LATEST, TrafficError, update_tags, update_traffic, zero_latest  # noqa: E402


def t(key, percent=None, tag=None):
    return {"key": key, "percent": percent, "tag": tag}


def split(targets):
    return {x["key"]: x["percent"] for x in targets if x["percent"]}


class Traffic(unittest.TestCase):
    def test_unspecified_targets_scale_proportionally(self):
        # delivery.md §2.1: rev1 40, rev2 60, then rev1=45 gives rev2 55.
        self.assertEqual(split(update_traffic([t("r1", 40), t("r2", 60)], {"r1": 45})), {"r1": 45, "r2": 55})

    def test_canary_ten_percent(self):
        out = update_traffic([t("r1", 100), t("r2", tag="canary")], {"r2": 10})
        self.assertEqual(split(out), {"r1": 90, "r2": 10})
        self.assertIn(t("r2", tag="canary"), out)

    def test_rounding_adds_one_to_the_biggest_loss(self):
        # b 33 and c 34 share 50: 24.63 and 25.37; truncated 24 and 25; b lost more.
        out = update_traffic([t("a", 33), t("b", 33), t("c", 34)], {"a": 50})
        self.assertEqual(split(out), {"a": 50, "b": 25, "c": 25})

    def test_rounding_ties_go_to_the_smaller_key(self):
        out = update_traffic([t("a", 50), t("b", 50)], {"c": 33})
        self.assertEqual(split(out), {"a": 34, "b": 33, "c": 33})

    def test_errors_are_gcloud_s(self):
        with self.assertRaisesRegex(TrafficError, r"^Over 100% of traffic is specified\.$"):
            update_traffic([t("r1", 100)], {"r1": 60, "r2": 50})
        with self.assertRaisesRegex(TrafficError, "Every target with traffic is updated but 100% of traffic"):
            update_traffic([t("r1", 40), t("r2", 60)], {"r1": 40, "r2": 50})
        with self.assertRaisesRegex(TrafficError, "Current traffic allocation of 90 is not 100 percent"):
            update_traffic([t("r1", 90)], {"r1": 100})

    def test_to_latest_drops_zero_targets_and_keeps_tags(self):
        out = update_traffic([t("r1", 90), t("r2", 10), t("r2", tag="canary")], {LATEST: 100})
        self.assertEqual(out, [t(LATEST, 100), t("r2", tag="canary")])

    def test_explicit_zero_is_dropped(self):
        out = update_traffic([t("r1", 90), t("r2", 10)], {"r1": 100, "r2": 0})
        self.assertEqual(out, [t("r1", 100)])

    def test_no_traffic_pins_latest_and_tags_move(self):
        pinned = zero_latest([t(LATEST, 100)], "r1")
        self.assertEqual(pinned, [t("r1", 100)])
        tagged = update_tags(pinned + [t("r1", tag="canary")], {"canary": "r2"}, [], False)
        self.assertEqual(tagged, [t("r1", 100), t("r2", tag="canary")])


class Cli(unittest.TestCase):
    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="standin-gcloud-")
        self.env = dict(os.environ, STANDIN_GCLOUD_HOME=self.home, STANDIN_GCLOUD_ACCOUNT="ci@example.com")
        self.env.pop("STANDIN_GCLOUD_URL_BASE", None)

    def g(self, *argv, env=None):
        prog = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standin-gcloud")
        return subprocess.run([prog, *argv], env=env or self.env, capture_output=True, text=True)

    def deploy(self, *extra):
        return self.g("run", "deploy", "svc", "--image", "r/app@sha256:" + "a" * 64, "--region", "r1",
                      "--project", "p", "--format", "json", *extra)

    def test_deploy_canary_shapes_and_errors(self):
        r = self.deploy("--no-traffic")
        self.assertEqual(r.returncode, 1)
        self.assertIn("ERROR: (gcloud.run.deploy) --no-traffic not supported when creating a new service.", r.stderr)
        r = self.deploy()
        self.assertEqual(r.returncode, 0, r.stderr)
        first = json.loads(r.stdout)["status"]["latestReadyRevisionName"]
        r = self.deploy("--no-traffic", "--tag", "canary")
        svc = json.loads(r.stdout)
        second = svc["status"]["latestReadyRevisionName"]
        self.assertEqual(svc["spec"]["traffic"], [{"percent": 100, "revisionName": first},
                                                  {"revisionName": second, "tag": "canary"}])
        self.assertTrue(svc["status"]["traffic"][1]["url"].startswith("https://canary---svc-"))
        base = ["run", "services", "update-traffic", "svc", "--region", "r1", "--project", "p", "--format", "json"]
        r = self.g(*base, "--to-latest", "--to-tags", "canary=10")
        self.assertEqual(r.returncode, 2)
        self.assertIn("At most one of --to-latest | --to-revisions | --to-tags", r.stderr)
        r = self.g(*base, "--to-tags", "canary=ten")
        self.assertIn("Traffic percentage value ten is not an integer.", r.stderr)
        r = self.g(*base, "--to-tags", "canary=101")
        self.assertIn("Traffic percentage value 101 is not between 0 and 100.", r.stderr)
        r = self.g(*base, "--to-tags", "canary=10")
        pairs = json.loads(r.stdout)
        self.assertEqual([(p["key"], p["specPercent"], p["displayTags"]) for p in pairs],
                         sorted([(first, "90", ""), (second, "10", "canary")]))
        r = self.g(*base, "--no-such-flag")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unrecognized arguments: --no-such-flag", r.stderr)
        r = self.g(*base, "--to-latest", env=dict(self.env, STANDIN_GCLOUD_ACCOUNT=""))
        self.assertEqual(r.returncode, 1)
        self.assertIn("You do not currently have an active account selected", r.stderr)


if __name__ == "__main__":
    unittest.main()
