#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine:
#   1. installs what is missing (scripts/install-deps.sh),
#   2. builds the memory library and its tests under AddressSanitizer and runs them,
#   3. builds everything (CUDA code too when the toolkit is present) and runs every test.
# GPU tests skip without a GPU (they run for real through scripts/gpu-build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
./scripts/install-deps.sh

echo "== memory tests under AddressSanitizer"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DWAND_ASAN=ON -DWAND_ONLY_MEMORY=ON \
  -DWAND_CUDA=OFF -DWAND_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan -L memory --output-on-failure -j"$jobs"

echo "== full build and test suite"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"
