#!/usr/bin/env bash
# Runs a GPU test with JSDPA_LOG=1 (the runtime logs each call's tile and
# template) and passes only if the test passes and at least one of its calls
# ran the given tile: a suite run with a forced tile (JSDPA_SM90_TILE) must
# not pass on the default tile because the override stopped applying.
#   expect_tile.sh TILE COMMAND [ARGS...]     e.g. expect_tile.sh m64n64w8s2 gpu_test_flash
# Exit 77 (the test's own skip, no GPU) passes through; a GPU where no call
# runs the Hopper template (not sm_90a) skips too.
set -uo pipefail
tile=$1
shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT
JSDPA_LOG=1 "$@" >"$log" 2>&1
rc=$?
grep -v "^jsdpa: " "$log"
[ "$rc" -ne 0 ] && exit "$rc"
if ! grep -q "^jsdpa: flash: tile .*templates/flash_sm90.cu" "$log"; then
  echo "SKIP: no flash call ran templates/flash_sm90.cu (not an sm_90a GPU): tile $tile untested"
  exit 77
fi
n=$(grep -c "^jsdpa: flash: tile $tile " "$log")
echo "calls on tile $tile: $n of $(grep -c '^jsdpa: flash: tile ' "$log") flash calls"
[ "$n" -gt 0 ] || { echo "FAILED: no call ran tile $tile"; exit 1; }
