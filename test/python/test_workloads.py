"""The benchmark's workloads file reader (torch-free), on the repository's copy."""

import unittest
from pathlib import Path

from jsdpa import _workloads

REPO_COPY = Path(__file__).resolve().parents[2] / "bench" / "workloads.yaml"


class Workloads(unittest.TestCase):
    def test_minimal_parser(self):
        text = ("workloads:\n"
                "  - name: a   # comment\n"
                "    lengths: [1, 2,\n"
                "              3]\n"
                "  - name: b\n"
                "    lengths: [7]\n")
        self.assertEqual(_workloads._parse_workloads_minimal(text),
                         [{"name": "a", "lengths": [1, 2, 3]}, {"name": "b", "lengths": [7]}])

    @unittest.skipUnless(REPO_COPY.is_file(), f"{REPO_COPY} is not there yet")
    def test_repository_copy(self):
        """The canonical batches: the token counts its comments state, by either reader."""
        text = REPO_COPY.read_text()
        got = {w["name"]: w["lengths"] for w in _workloads._parse_workloads_minimal(text)}
        self.assertEqual({n: (len(v), sum(v)) for n, v in got.items()},
                         {"long": (16, 64005), "mixed": (64, 72106), "short": (512, 71734)})
        loaded = {w["name"]: w["lengths"] for w in _workloads.load_workloads(REPO_COPY)}
        self.assertEqual(loaded, got)


if __name__ == "__main__":
    unittest.main()
