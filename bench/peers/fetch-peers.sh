#!/usr/bin/env bash
# Exports the sources of the two peers of issue 13 item 5 (and the pure-Python packages they
# import that the GPU machine lacks) into bench/peers/vendor/, pinned by commit:
#
#   bench/peers/fetch-peers.sh            # from the mirrors under $PEERS_MIRROR (default /work/.mirror)
#   PEERS_MIRROR= bench/peers/fetch-peers.sh   # no mirror: git clone from GitHub (needs the network)
#
# vendor/ is ignored by git (.gitignore): these are references to measure wand against, never part
# of the project's code. It travels to the GPU machine as a `carry` path (about 10 MiB).
#
# What is exported, and why (the GPU machine has torch, transformers, tokenizers, sentencepiece,
# safetensors, accelerate, huggingface_hub, einops, imageio, regex, opencv, peft; no pip, no network):
#   vendor/Wan2.2/          Wan-Video/Wan2.2: generate.py + wan/ (the official code, unmodified)
#   vendor/site/diffusers/  huggingface/diffusers src/diffusers, without the pipelines and modular
#                           pipelines of other models (only pipelines/wan is kept): WanModel of the
#                           official code is a diffusers ModelMixin, and peer (b) is diffusers itself
#   vendor/site/ftfy/       rspeer/python-ftfy: imported at module level by wan/modules/tokenizers.py
#                           and by diffusers' Wan pipelines (prompt cleaning)
#   vendor/site/wcwidth/    jquast/wcwidth: ftfy's one dependency
#   vendor/site/easydict/   makinacorpus/easydict: the official configs are EasyDicts
#   vendor/site/*.dist-info minimal metadata (Name, Version, top_level.txt): diffusers decides that an
#                           optional package (ftfy) is present through importlib.metadata, not by
#                           importing it, so a bare source folder would count as absent.
#   vendor/SOURCES.txt      repository, commit and path of each export
set -euo pipefail
cd "$(dirname "$0")"
mirror=${PEERS_MIRROR-/work/.mirror}
vendor=vendor
rm -rf "$vendor"
mkdir -p "$vendor/site"

# name                         commit                                     version label
pins=(
  "Wan-Video/Wan2.2            42bf4cfaa384bc21833865abc2f9e6c0e67233dc  main-2026-03-17"
  "huggingface/diffusers       58eb52c0803ea9af3abec60841c2a093bdf1f951  0.40.0.dev0"
  "rspeer/python-ftfy          74dd0452b48286a3770013b3a02755313bd5575e  6.3.1"
  "jquast/wcwidth              36a625179ed2675287fe6b61c2ad319406449e60  0.2.13"
  "makinacorpus/easydict       6df258e9bbeb2414bcb747b1691a6fbf5dfb7769  1.13"
)

gitdir_for() {  # owner/name -> a git directory holding it
  local repo=$1 d
  d="$mirror/${repo/\//+}/repo"
  if [ -n "$mirror" ] && git --git-dir="$d" rev-parse --git-dir > /dev/null 2>&1; then
    echo "$d"
    return
  fi
  d="$PWD/.clones/${repo/\//+}.git"
  if [ ! -d "$d" ]; then
    git clone --bare --quiet "https://github.com/$repo" "$d" >&2
  fi
  echo "$d"
}

export_tree() {  # repo rev dest shown-as paths...
  local repo=$1 rev=$2 dest=$3 shown=$4
  shift 4
  local gd
  gd=$(gitdir_for "$repo")
  mkdir -p "$dest"
  git --git-dir="$gd" archive --format=tar "$rev" -- "$@" | tar -x -C "$dest"
  echo "$repo $(git --git-dir="$gd" rev-parse "$rev^{commit}") $* -> $shown" >> "$vendor/SOURCES.txt"
}

dist_info() {  # name version top-level
  local d="$vendor/site/$1-$2.dist-info"
  mkdir -p "$d"
  printf 'Metadata-Version: 2.1\nName: %s\nVersion: %s\n' "$1" "$2" > "$d/METADATA"
  printf '%s\n' "$3" > "$d/top_level.txt"
}

: > "$vendor/SOURCES.txt"
for p in "${pins[@]}"; do
  read -r repo rev label <<< "$p"
  case "$repo" in
    Wan-Video/Wan2.2)
      export_tree "$repo" "$rev" "$vendor/Wan2.2" "$vendor/Wan2.2" generate.py wan LICENSE.txt requirements.txt ;;
    huggingface/diffusers)
      tmp=$(mktemp -d)
      export_tree "$repo" "$rev" "$tmp" "$vendor/site/diffusers (pipelines: wan only)" src/diffusers LICENSE
      # Keep pipelines/*.py (pipeline_utils, ...) and pipelines/wan; drop the other models' pipelines
      # and the modular pipelines' model folders: both packages import those lazily, by name.
      find "$tmp/src/diffusers/pipelines" -mindepth 1 -maxdepth 1 -type d ! -name wan -exec rm -rf {} +
      find "$tmp/src/diffusers/modular_pipelines" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
      mv "$tmp/src/diffusers" "$vendor/site/diffusers"
      mv "$tmp/LICENSE" "$vendor/site/diffusers/LICENSE"
      rm -rf "$tmp"
      dist_info diffusers "$label" diffusers ;;
    rspeer/python-ftfy)
      export_tree "$repo" "$rev" "$vendor/site" "$vendor/site/ftfy" ftfy
      dist_info ftfy "$label" ftfy ;;
    jquast/wcwidth)
      export_tree "$repo" "$rev" "$vendor/site" "$vendor/site/wcwidth" wcwidth
      dist_info wcwidth "$label" wcwidth ;;
    makinacorpus/easydict)
      export_tree "$repo" "$rev" "$vendor/site" "$vendor/site/easydict" easydict
      dist_info easydict "$label" easydict ;;
  esac
done
find "$vendor" -name '__pycache__' -prune -exec rm -rf {} +
echo "fetch-peers: $(du -sh "$vendor" | cut -f1) in $PWD/$vendor"
cat "$vendor/SOURCES.txt"
