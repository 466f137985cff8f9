#!/usr/bin/env bash
# Disk -> host read bandwidth on this machine, one table: dd with O_DIRECT, then
# bench_disk_read (io_uring across queue depths and chunk sizes, and the pread engine),
# all on the same file in the same run. Needs no root: every read is O_DIRECT, so no
# page-cache drop is required.
#
#   bench/memory/disk_read.sh [SIZE] [DIR]
#     SIZE  test file size, e.g. 2G (default), 512M; dd units
#     DIR   where the test file goes (default: $WAND_BENCH_DIR or build/bench-tmp, ignored by git); it is kept
#           for reruns and can be removed afterwards
#   BENCH_BIN=path/to/bench_disk_read (default: build/bench/memory/bench_disk_read)
set -euo pipefail
size=${1:-2G}
dir=${2:-${WAND_BENCH_DIR:-build/bench-tmp}}
bin=${BENCH_BIN:-build/bench/memory/bench_disk_read}
[[ -x "$bin" ]] || { echo "disk_read.sh: $bin not found (build the bench_disk_read target, or set BENCH_BIN)" >&2; exit 1; }
mkdir -p "$dir"
file="$dir/disk-read-test.bin"

bytes=$(numfmt --from=iec "$size")
if [[ ! -f "$file" || $(stat -c %s "$file") -ne $bytes ]]; then
  echo "creating $file ($size) ..." >&2
  count=$(( (bytes + 8388607) / 8388608 ))
  dd if=/dev/urandom of="$file" bs=8M count="$count" iflag=fullblock status=none
  truncate -s "$bytes" "$file"
  sync "$file"
fi

echo "# disk read, $(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname), kernel $(uname -r)"
echo "# file $file ($size), filesystem $(df -PT "$dir" | awk 'NR==2 {print $2 " on " $1}')"
echo
dd_out=$(dd if="$file" of=/dev/null bs=8M iflag=direct 2>&1 | tail -1)
dd_gbps=$(awk -v b="$bytes" -v line="$dd_out" 'BEGIN {
  n = split(line, f, ","); split(f[3], t, " "); printf "%.2f", b / t[1] / 1e9 }')

"$bin" --file "$file" --size "$size" | sed -n '/^|/p' > "$dir/bench.out"
head -2 "$dir/bench.out"
echo "| dd bs=8M iflag=direct | 1 | 8.0 MiB | $dd_gbps | no |"
tail -n +3 "$dir/bench.out"
