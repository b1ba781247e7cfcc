#!/usr/bin/env bash
# Rebuild indexing/embedders/data/transfer-memory.npz (+ .json), the memory of IMGRAG_IMAGE_EMBEDDER=transfer,
# from packages only: Debian fonts-noto-color-emoji + unicode-cldr-core (emoji, CLDR names in en/zh),
# npm @iconify-json sets (pinned below; flag-icons named by ISO code take the flag emoji's CLDR names), pip
# cairosvg (draws them). ~40 min on 2 busy cores (embedding 14.2k pictures with EfficientNet-Lite0, then
# drawing each again for its colour layout); features are cached in $IMGRAG_EVAL_CACHE/embeddings.
#   [IMGRAG_IMAGE_FRAMING=content] bash evals/transfer_memory.sh [OUT.npz]
# IMGRAG_IMAGE_FRAMING / IMGRAG_IMAGE_BACKBONE (default centre / lite0) choose how the memory's pictures are
# framed; the .json records them, and IMGRAG_IMAGE_EMBEDDER=transfer frames the pictures it indexes the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-indexing/embedders/data/transfer-memory.npz}
NPM_DIR=${NPM_DIR:-$HOME/.cache/imgrag/iconify}
export IMGRAG_ICONIFY_DIR="$NPM_DIR/node_modules/@iconify-json"
export IMGRAG_IMAGE_FRAMING=${IMGRAG_IMAGE_FRAMING:-centre} IMGRAG_IMAGE_BACKBONE=${IMGRAG_IMAGE_BACKBONE:-lite0}
export IMGRAG_EVAL_CACHE=${IMGRAG_EVAL_CACHE:-/tmp/evc-transfer-memory}
mkdir -p "$NPM_DIR"
npm install --prefix "$NPM_DIR" --no-audit --no-fund @iconify-json/openmoji@1.2.29 @iconify-json/fluent-emoji-flat@1.2.6 \
    @iconify-json/twemoji@1.2.5 @iconify-json/flat-color-icons@1.2.3 @iconify-json/game-icons@1.2.4 @iconify-json/flag@1.2.12
python -m imgrag.evals.datasets.iconify
python -m imgrag.evals.transfer build --memory emoji --memory iconify:openmoji --memory iconify:fluent-emoji-flat \
    --memory iconify:twemoji --memory iconify:flat-color-icons --memory iconify:game-icons --memory iconify:flag \
    --k 10 --temp 0.03 --beta 0.5 --dims 128 --out "$OUT"
