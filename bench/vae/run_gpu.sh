#!/usr/bin/env bash
# One command on the GPU machine: configure against the Python LibTorch, build
# only the VAE targets, run the VAE GPU/golden tests and the decode and encode benchmarks.
#   bench/vae/run_gpu.sh [OUT_DIR]       (default: out/vae-gpu)
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out/vae-gpu}
mkdir -p "$out"
build=${WAND_GPU_BUILD_DIR:-build-gpu-vae}
py=${WAND_TORCH_PYTHON:-}
if [ -z "$py" ]; then
  if [ -x /opt/torch/.venv/bin/python3 ]; then py=/opt/torch/.venv/bin/python3; else py=python3; fi
fi
tp=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
prefix=$PWD/$build/prefix
mkdir -p "$prefix"
if ls .debs/*.deb >/dev/null 2>&1; then
  for f in .debs/*.deb; do dpkg -x "$f" "$prefix"; done
  for pc in $(find "$prefix" -name '*.pc'); do sed -i -E "s#(=|-I|-L)/usr#\1$prefix/usr#g" "$pc"; done
  export PKG_CONFIG_PATH="$prefix/usr/lib/x86_64-linux-gnu/pkgconfig:${PKG_CONFIG_PATH:-}"
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$py" -c 'import torch; print("torch", torch.__version__)'
} > "$out/machine.txt" 2>&1
golden=()  # the golden set is in the checkout (tests/data/golden); WAND_GOLDEN_DIR overrides
cmake -S . -B "$build" -G Ninja "${golden[@]}" -DCMAKE_BUILD_TYPE=Release -DTorch_DIR="$tp/Torch" \
  -DCMAKE_PREFIX_PATH="$prefix/usr" -DCMAKE_BUILD_RPATH="$prefix/usr/lib/x86_64-linux-gnu" \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc \
  -DCUDAToolkit_ROOT=/usr/local/cuda > "$out/cmake.log" 2>&1 || { tail -40 "$out/cmake.log"; exit 1; }
ninja -C "$build" -j"$(nproc)" vae_gpu_test vae_golden_test vae_test vae_encode_test bench_vae_decode bench_vae_encode > "$out/build.log" 2>&1 \
  || { grep -E "error|Error" "$out/build.log" | head -40; exit 1; }
"$build/tests/model/vae_gpu_test" > "$out/vae_gpu_test.log" 2>&1; echo "vae_gpu_test rc=$?"
"$build/tests/model/vae_golden_test" > "$out/vae_golden_test.log" 2>&1; echo "vae_golden_test rc=$?"
[ "${WAND_VAE_TESTS_ONLY:-0}" = 1 ] && { grep -hE "rel_l2|peak|OK|FAIL" "$out/vae_gpu_test.log"; exit 0; }
"$build/bench/vae/bench_vae_decode" --budget-gib 16 > "$out/bench_vae_decode.md" 2>&1; echo "bench rc=$?"
"$build/bench/vae/bench_vae_decode" --budget-gib 16 --bf16 > "$out/bench_vae_decode_bf16.md" 2>&1; echo "bench bf16 rc=$?"
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:False "$build/bench/vae/bench_vae_decode" --budget-gib 16 --no-untiled \
  > "$out/bench_vae_decode_noexp.md" 2>&1; echo "bench no-expandable rc=$?"
"$build/bench/vae/bench_vae_encode" > "$out/bench_vae_encode.md" 2>&1; echo "bench encode rc=$?"
"$build/bench/vae/bench_vae_encode" --bf16 > "$out/bench_vae_encode_bf16.md" 2>&1; echo "bench encode bf16 rc=$?"
grep -hE "rel_l2|OK|FAIL" "$out/vae_gpu_test.log" "$out/vae_golden_test.log"
cat "$out/bench_vae_decode.md" "$out/bench_vae_decode_bf16.md" "$out/bench_vae_decode_noexp.md"
cat "$out/bench_vae_encode.md" "$out/bench_vae_encode_bf16.md"
