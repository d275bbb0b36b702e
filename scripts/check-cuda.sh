#!/usr/bin/env bash
# Type-check the `--features cuda` build on a machine with no GPU and no CUDA toolkit.
#
# nvcc comes from PyPI wheels. The `nvidia-cuda-nvcc-cu12` wheels (12.0.76 .. 12.9.86) ship only
# ptxas, libnvvm and libdevice, with no `nvcc` driver and no `cicc`, so they cannot build
# candle-kernels. The CUDA 13 split wheels (nvidia-cuda-nvcc, -crt, nvidia-nvvm, -runtime, -cccl)
# add up to a full toolkit tree under nvidia/cu13/{bin,include,lib,nvvm}. Pinned to 13.0, which
# cudarc 0.19.10 supports (cuda-13000); it reads the version from `nvcc --version`.
#
# What runs: candle-kernels' build script (cudaforge) compiles its .cu files with nvcc to PTX and
# to a static libmoe.a for sm_$CUDA_COMPUTE_CAP; cudarc's build script asks nvcc for the version.
# `cargo check` links nothing, so libcuda/cublas/curand are not needed here (a real
# `cargo build --features cuda` would also need the driver library and the cu13 cublas/curand/nvrtc
# wheels, or a GPU machine's toolkit).
#
# Env overrides: CUDA_WHEELS_DIR (wheel cache), CARGO_TARGET_DIR, CUDA_COMPUTE_CAP, NICE,
# CARGO_BUILD_JOBS, CUDAFORGE_THREADS (parallel nvcc jobs in candle-kernels' build script).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CUDA_WHEEL_VERSION="13.0.88"
CCCL_WHEEL_VERSION="13.0.85"
CUDA_WHEELS_DIR="${CUDA_WHEELS_DIR:-/tmp/cuda-wheels}"
PREFIX="$CUDA_WHEELS_DIR/cu13-$CUDA_WHEEL_VERSION"
TOOLKIT="$PREFIX/nvidia/cu13"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if [ ! -x "$TOOLKIT/bin/nvcc" ] || [ ! -x "$TOOLKIT/nvvm/bin/cicc" ] \
    || [ ! -f "$TOOLKIT/include/cuda_runtime.h" ] || [ ! -d "$TOOLKIT/include/cccl/cub" ]; then
    echo "check-cuda: installing CUDA $CUDA_WHEEL_VERSION wheels into $PREFIX" >&2
    rm -rf "$PREFIX.tmp"
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --target "$PREFIX.tmp" \
        "nvidia-cuda-nvcc==$CUDA_WHEEL_VERSION" \
        "nvidia-cuda-crt==$CUDA_WHEEL_VERSION" \
        "nvidia-nvvm==$CUDA_WHEEL_VERSION" \
        "nvidia-cuda-runtime==$CUDA_WHEEL_VERSION" \
        "nvidia-cuda-cccl==$CCCL_WHEEL_VERSION"
    rm -rf "$PREFIX"
    mv "$PREFIX.tmp" "$PREFIX"
fi

export CUDA_HOME="$TOOLKIT" CUDA_PATH="$TOOLKIT" CUDA_ROOT="$TOOLKIT" CUDA_TOOLKIT_ROOT_DIR="$TOOLKIT"
export NVCC="$TOOLKIT/bin/nvcc"
export PATH="$TOOLKIT/bin:$PATH"
export LD_LIBRARY_PATH="$TOOLKIT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"   # no GPU to ask; sm_80 = A100
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/target-cuda}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$CARGO_BUILD_JOBS}"

"$NVCC" --version | tail -2
cd "$ROOT"
exec nice -n "${NICE:-19}" cargo check --locked -p dmsrec --features cuda "$@"
