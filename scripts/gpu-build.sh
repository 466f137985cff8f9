#!/usr/bin/env bash
# Builds the CUDA configuration against a CUDA-enabled LibTorch, in one call, and
# optionally runs tests:
#
#   scripts/gpu-build.sh                 # configure + build into build-gpu/
#   WAND_CTEST_LABELS=gpu scripts/gpu-build.sh --test    # then ctest -L gpu
#
# LibTorch comes from the Python that has torch: $WAND_TORCH_PYTHON, else
# /opt/torch/.venv/bin/python3 when present, else python3. Headers that the
# machine lacks (liburing, libsystemd) come from Debian .debs in .debs/
# (scripts/fetch-debs.sh downloads them on a Debian machine), unpacked into
# build-gpu/prefix — never into /. ffmpeg's dev libraries are optional: without
# them video is written in the lossless fallback format.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${WAND_GPU_BUILD_DIR:-build-gpu}
py=${WAND_TORCH_PYTHON:-}
if [ -z "$py" ]; then
  if [ -x /opt/torch/.venv/bin/python3 ]; then py=/opt/torch/.venv/bin/python3; else py=python3; fi
fi
torch_prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
echo "gpu-build: torch $("$py" -c 'import torch; print(torch.__version__)') at $torch_prefix"

prefix=$root/$build/prefix
mkdir -p "$prefix"
need_debs=0
pkg-config --exists liburing 2>/dev/null || need_debs=1
pkg-config --exists libsystemd 2>/dev/null && [ -e /usr/include/systemd/sd-daemon.h ] || need_debs=1
if [ "$need_debs" = 1 ]; then
  if ls .debs/*.deb >/dev/null 2>&1; then
    for f in .debs/*.deb; do dpkg -x "$f" "$prefix"; done
    for pc in $(find "$prefix" -name '*.pc'); do
      sed -i -E "s#(=|-I|-L)/usr#\1$prefix/usr#g" "$pc"
    done
    export PKG_CONFIG_PATH="$prefix/usr/lib/x86_64-linux-gnu/pkgconfig:${PKG_CONFIG_PATH:-}"
    echo "gpu-build: liburing/libsystemd from .debs unpacked into $prefix"
  else
    echo "gpu-build: no .debs/ folder; building without liburing/libsystemd where absent"
  fi
fi

cuda_args=()
if [ -x /usr/local/cuda/bin/nvcc ]; then
  cuda_args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DCUDAToolkit_ROOT=/usr/local/cuda)
fi
gen=(-G Ninja)
command -v ninja >/dev/null || gen=()
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DTorch_DIR="$torch_prefix/Torch" -DCMAKE_PREFIX_PATH="$prefix/usr" \
  -DCMAKE_BUILD_RPATH="$prefix/usr/lib/x86_64-linux-gnu" \
  -DCMAKE_CUDA_ARCHITECTURES="${WAND_CUDA_ARCH:-90}" \
  "${cuda_args[@]}" ${WAND_CMAKE_ARGS:-}
cmake --build "$build" -j"$(nproc)"

if [ "${1:-}" = "--test" ]; then
  ctest --test-dir "$build" -L "${WAND_CTEST_LABELS:-gpu}" --output-on-failure -j"${WAND_CTEST_JOBS:-1}"
fi
