#!/usr/bin/env bash
# Installs the Debian 12 packages wand builds against. Idempotent; needs root (or sudo).
set -euo pipefail
pkgs=(
  build-essential cmake ninja-build pkg-config git
  libtorch-dev libboost-dev liburing-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libsentencepiece-dev libsystemd-dev
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
  sentencepiece  # spm_train / spm_encode: the oracle of tests/model/tokenizer_conformance_test.cpp
  python3        # scripts/check_notes.py (ctest label lint)
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
