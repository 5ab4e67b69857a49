#!/usr/bin/env bash
# Set up gmflow on a Debian machine: install the Debian packages it needs (only those missing),
# then configure and build into build/.  Safe to rerun.
#
# usage: tools/setup.sh [-h | --help]     (no arguments; settings by environment variables)
#   tools/setup.sh            # packages + Release build in build/
#   BUILD_DIR=b tools/setup.sh
#   GMFLOW_SETUP_TORCH=1 tools/setup.sh   # also python3-torch (bench/run_train_bench.sh)
set -euo pipefail
# me, usage, usage_error, positional_args: the scripts' convention
# shellcheck source-path=SCRIPTDIR source=scriptargs.sh
. "$(dirname "$0")/scriptargs.sh"
positional_args "$@"
[ ${#pos[@]} -eq 0 ] || usage_error "unexpected argument '${pos[0]}' (tools/setup.sh takes no arguments)"
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config libsundials-dev libopenblas-dev liblapacke-dev
      libgsl-dev zlib1g-dev libdeflate-dev python3-numpy
      # MPI data-parallel runs (optional; docs/SCALE.md)
      libopenmpi-dev openmpi-bin
      # notebooks/ (figures) and tests/notebooks.sh
      jupyter-nbconvert python3-ipykernel python3-matplotlib python3-nbformat
      # the Python package (python/, docs/PYTHON.md) and its tests
      python3-dev python3-pytest python3-scipy)
# bench/run_train_bench.sh's PyTorch peers (bench/torch_*.py): large, so only when asked
[ "${GMFLOW_SETUP_TORCH:-0}" = 1 ] && PKGS+=(python3-torch)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Install from the current package lists; refresh them only if that fails.
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}" ||
    { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; }
fi

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD_DIR" -j"$(nproc)"
echo "setup: built $BUILD_DIR/gmflow"
