"""The ctypes structs of jsdpa._lib against jsdpa.h: sizes and field offsets as a C
compiler lays them out (catches the header and the bindings drifting apart)."""

import ctypes
import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

from jsdpa import _lib

HEADER_DIR = Path(__file__).resolve().parents[2] / "runtime" / "include"
CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
STRUCTS = {
    "jsdpa_jagged_t": _lib.JaggedT,
    "jsdpa_context_options_t": _lib.ContextOptionsT,
    "jsdpa_cache_stats_t": _lib.CacheStatsT,
    "jsdpa_forward_options_t": _lib.ForwardOptionsT,
    "jsdpa_selection_t": _lib.SelectionT,
}


@unittest.skipUnless(CC and (HEADER_DIR / "jsdpa.h").is_file(),
                     "needs a C compiler and runtime/include/jsdpa.h")
class Layout(unittest.TestCase):
    def test_structs_match_the_header(self):
        lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "jsdpa.h"',
                 "int main(void) {"]
        expected = []
        for cname, T in STRUCTS.items():
            lines.append(f'  printf("{cname} %zu\\n", sizeof({cname}));')
            expected.append(f"{cname} {ctypes.sizeof(T)}")
            for field, _ in T._fields_:
                lines.append(f'  printf("{cname}.{field} %zu\\n", offsetof({cname}, {field}));')
                expected.append(f"{cname}.{field} {getattr(T, field).offset}")
        lines += ["  return 0;", "}"]
        with tempfile.TemporaryDirectory() as tmp:
            src, exe = Path(tmp) / "layout.c", Path(tmp) / "layout"
            src.write_text("\n".join(lines) + "\n")
            # Neither the compiler nor the executable may inherit a sanitizer
            # preload meant for Python (the compiler's own allocations would be
            # reported as leaks).
            env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
            build = subprocess.run([CC, f"-I{HEADER_DIR}", str(src), "-o", str(exe)],
                                   capture_output=True, text=True, timeout=120, env=env)
            self.assertEqual(build.returncode, 0, build.stderr)
            got = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60,
                                 env=env).stdout.split("\n")[:-1]
        self.assertEqual(got, expected)

    def test_enums(self):
        """The enum values the bindings use, against the header's text."""
        text = (HEADER_DIR / "jsdpa.h").read_text()
        for name, value in (("JSDPA_DTYPE_FP16", 1), ("JSDPA_DTYPE_BF16", 2),
                            ("JSDPA_DTYPE_FP32", 3), ("JSDPA_DTYPE_FP64", 4),
                            ("JSDPA_INDEX_INT32", 1), ("JSDPA_INDEX_INT64", 2),
                            ("JSDPA_BACKEND_FLASH", 1), ("JSDPA_BACKEND_EFFICIENT", 2),
                            ("JSDPA_BACKEND_MATH", 3), ("JSDPA_BACKEND_CPU", 4),
                            ("JSDPA_BACKEND_COUNT", 5), ("JSDPA_PRECISION_FP64", 1),
                            ("JSDPA_PRECISION_TF32", 2), ("JSDPA_STATUS_INTERNAL", 8),
                            ("JSDPA_REASON_CAPACITY", 512)):
            self.assertRegex(text, rf"\b{name}\s*=?\s*{value}\b", name)
        self.assertEqual(_lib.BACKEND_NAMES, ("auto", "flash", "efficient", "math", "cpu"))


if __name__ == "__main__":
    unittest.main()
