#!/usr/bin/env bash
# Installs what jsdpa needs to build and test on Debian 12 (with the CUDA toolkit
# already installed), skipping whatever is there. Debian packages via apt-get,
# Python tools via pip. Safe to run repeatedly.
set -euo pipefail

need_pkgs=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in build-essential cmake pkg-config libyaml-dev libssl-dev llvm-14-tools python3; do
  have_pkg "$p" || need_pkgs+=("$p")
done
if ((${#need_pkgs[@]})); then
  echo "setup: installing Debian packages: ${need_pkgs[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! command -v nvcc >/dev/null 2>&1 && [ ! -e /usr/local/cuda/include/cuda.h ]; then
  echo "setup: the CUDA toolkit (its headers cuda.h / nvrtc.h and NVRTC) is required; install it first" >&2
  exit 1
fi
# The lit tests assemble shipped kernels with ptxas to catch register spills
# (test/gen/Inputs/check_ptx_spills.py looks in the same places): needed by
# `tools/setup.sh --tests` (tools/test.sh), not by the library.
if [ "${1:-}" = "--tests" ] && ! command -v ptxas >/dev/null 2>&1 && [ ! -x "${CUDA_HOME:-/nonexistent}/bin/ptxas" ] &&
  [ ! -x /usr/local/cuda/bin/ptxas ]; then
  echo "setup: ptxas (the CUDA toolkit's assembler, package cuda-nvcc) is required by the tests; install it first" >&2
  exit 1
fi

# The lit tests also disassemble the shipped Hopper kernels (HGMMA, UTMALDG in
# their SASS: test/gen/Inputs/check_sass.py, which looks in the same places).
# The toolkit's nvdisasm when it has one, else NVIDIA's nvidia-cuda-nvdisasm
# wheel from PyPI, unpacked into $JSDPA_TOOLS_DIR (default ~/.cache/jsdpa-tools).
if [ "${1:-}" = "--tests" ]; then
  TOOLS_DIR=${JSDPA_TOOLS_DIR:-$HOME/.cache/jsdpa-tools}
  have_nvdisasm=false
  command -v nvdisasm >/dev/null 2>&1 && have_nvdisasm=true
  for d in "${CUDA_HOME:-/nonexistent}/bin" /usr/local/cuda/bin "$TOOLS_DIR"/nvidia/cu*/bin; do
    [ -x "$d/nvdisasm" ] && have_nvdisasm=true
  done
  if ! $have_nvdisasm; then
    PY=${PYTHON:-python3}
    if ! "$PY" -m pip --version >/dev/null 2>&1; then
      echo "setup: installing Debian's python3-pip (to fetch nvdisasm from PyPI)"
      SUDO=""
      [ "$(id -u)" -ne 0 ] && SUDO="sudo"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip >/dev/null
    fi
    echo "setup: installing nvdisasm (PyPI nvidia-cuda-nvdisasm) into $TOOLS_DIR"
    mkdir -p "$TOOLS_DIR"
    "$PY" -m pip install -q --upgrade --target "$TOOLS_DIR" nvidia-cuda-nvdisasm ||
      "$PY" -m pip install -q --upgrade --break-system-packages --target "$TOOLS_DIR" nvidia-cuda-nvdisasm
  fi
fi

# Python tools for the package tests (numpy for jsdpa.numpy): from PyPI when
# this python3 has pip (a pyenv or venv Python), else Debian's python3-numpy
# (a fresh Debian's system Python has no pip).
PY=${PYTHON:-python3}
if ! "$PY" -c "import numpy" >/dev/null 2>&1; then
  if "$PY" -m pip --version >/dev/null 2>&1; then
    echo "setup: installing numpy from PyPI"
    "$PY" -m pip install -q numpy || "$PY" -m pip install -q --break-system-packages numpy
  else
    echo "setup: installing Debian's python3-numpy"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-numpy >/dev/null
  fi
fi
