#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine, in one command:
#   installs what is missing, builds wand / wanctl / wand-make-model, writes a tiny
#   text-to-video model in the Wan2.2-T2V-A14B release layout (two experts, sharded
#   safetensors, umT5 .pth + tokenizer, VAE .pth), starts the daemon on a private
#   socket, generates a video with `wanctl generate`, stops the daemon.
# Leaves demo/out.mp4 (demo/out.avi where ffmpeg's libraries are absent).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
./scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target wand wanctl wand-make-model

demo=$root/demo
mkdir -p "$demo"
model=$demo/models/tiny-t2v
if [ ! -f "$model/high_noise_model/config.json" ]; then
  rm -rf "$model"
  build/model/wand-make-model --preset tiny-t2v --out "$model" --seed 7
fi

sock=$demo/wand.sock
build/daemon/wand --socket "$sock" --state-dir "$demo/state" --model tiny-t2v="$model" \
  > "$demo/wand.log" 2>&1 &
wand_pid=$!
trap 'kill $wand_pid 2>/dev/null || true; wait $wand_pid 2>/dev/null || true' EXIT

out=$demo/out.mp4
build/ctl/wanctl --socket "$sock" --wait 120 generate --model tiny-t2v \
  --prompt "a red kite over a green hill, morning light" \
  --size 128x128 --frames 9 --steps 8 --seed 42 -o "$out"
build/ctl/wanctl --socket "$sock" shutdown >/dev/null 2>&1 || true
wait $wand_pid 2>/dev/null || true
trap - EXIT
ls -l "$out"
echo "demo: video written to $out (daemon log: $demo/wand.log)"
