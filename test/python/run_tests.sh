#!/usr/bin/env bash
# The Python package's tests (ctest: "python"): run_tests.sh [path/to/libjsdpa.so]
# Plain unittest, so CI needs nothing beyond numpy, which is required
# (tools/setup.sh installs it): without it this exits 77, which ctest shows as skipped.
# The torch tests inside skip with a printed reason when torch (or CUDA) is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
PY=${PYTHON:-python3}

if [ $# -ge 1 ]; then
  export JSDPA_LIBRARY=$1
fi
if ! "$PY" -c "import numpy" >/dev/null 2>&1; then
  echo "SKIP: numpy is not importable by $PY (tools/setup.sh installs it)"
  exit 77
fi
# The interpreter itself, not a launcher: a pyenv shim is a shell script that
# picks another Python once LD_PRELOAD (below) is set.
PY=$("$PY" -c "import sys; print(sys.executable)")

# An ASan+UBSan build of libjsdpa (tools/test.sh) can only be dlopen'ed into a process
# whose first library is the ASan runtime; Python's own allocations are not ours to
# leak-check.
if [ -n "${JSDPA_LIBRARY:-}" ] && ldd "$JSDPA_LIBRARY" 2>/dev/null | grep libasan >/dev/null; then
  asan=$(gcc -print-file-name=libasan.so)
  export LD_PRELOAD="$asan${LD_PRELOAD:+:$LD_PRELOAD}"
  # Later options win: ours go last.
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0:protect_shadow_gap=0"
  echo "run_tests: libjsdpa is built with ASan; preloading $asan"
fi

export PYTHONPATH="$repo/python:$here${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
cd "$here"
exec "$PY" -m unittest discover -s "$here" -p 'test_*.py' -v "${@:2}"
