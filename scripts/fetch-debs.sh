#!/usr/bin/env bash
# Downloads (on a Debian 12 machine) the .debs that scripts/gpu-build.sh unpacks
# into a private prefix on machines that lack these headers.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .debs
cd .debs
apt-get download liburing-dev liburing2 libsystemd-dev libsystemd0
