#!/usr/bin/env bash
# Here (no GPU): builds a Release libjsdpa and puts it, with the non-system libraries it
# links (libyaml, libcrypto), into build-pylib/, for GPU machines that cannot build it
# (no libyaml-dev there). Carry build-pylib to the device and run
#   test/python/run_gpu.sh build-pylib/libjsdpa.so
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake -S . -B build-pylib-cmake -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-pylib-cmake -j "$(nproc)" --target jsdpa >/dev/null
rm -rf build-pylib
mkdir -p build-pylib
cp -L build-pylib-cmake/libjsdpa.so build-pylib/libjsdpa.so
ldd build-pylib/libjsdpa.so | awk '/libyaml|libcrypto/ {print $3}' | while read -r dep; do
  cp -L "$dep" build-pylib/
done
ls -l build-pylib
