#!/usr/bin/env bash
# Refreshes the repository's copy of the golden reference set (tests/data/golden) from the
# steering repo's shared/golden (default: ../shared/golden beside the checkout), then checks
# every data file against MANIFEST.json. Commit the result; tests read only the copy.
#   scripts/sync-golden.sh [SOURCE_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/golden}
[ -f "$src/MANIFEST.json" ] || { echo "sync-golden: no MANIFEST.json in $src" >&2; exit 2; }
rm -rf tests/data/golden
mkdir -p tests/data/golden
cp -r "$src"/. tests/data/golden/
chmod -R u+w tests/data/golden
python3 - <<'PY'
import hashlib, json, sys
root = "tests/data/golden"
bad = []
for e in json.load(open(f"{root}/MANIFEST.json")):
    if e["path"] == "README.md":
        continue  # documentation, edited after the manifest was written
    with open(f"{root}/{e['path']}", "rb") as f:
        if hashlib.sha256(f.read()).hexdigest() != e["sha256"]:
            bad.append(e["path"])
if bad:
    sys.exit("sync-golden: sha256 mismatch: " + ", ".join(bad))
print("sync-golden: tests/data/golden matches its MANIFEST.json")
PY
