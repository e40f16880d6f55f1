# Sourced by the device scripts (test/gpu/hopper_check.sh, bench/dev/*_probe.sh):
# goes to the repository root, sets $OUT (the device tool's folder, else
# device-out/), $B (the Release build folder, build-dev), the kernel cache and
# the carried sysroot, starts the clock $t0 and builds through
# device_validate.sh (its log: $OUT/build.log).
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
B=build-dev
export JSDPA_CACHE_DIR=$PWD/$B/cache CARRY=${CARRY:-build-gpurt-carry}
t0=$SECONDS
test/gpu/device_validate.sh build >/dev/null 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
