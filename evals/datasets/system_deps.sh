#!/usr/bin/env bash
# Install the Debian packages the corpus builders in evals/datasets/ need. Idempotent: when every
# package is already installed it only runs dpkg-query and exits (well under a second).
#
#   bash evals/datasets/system_deps.sh                # poppler, fonts, Debian Reference PDFs (en + zh)
#   bash evals/datasets/system_deps.sh --openclipart  # ... plus openclipart-png/-svg (~156 MB download,
#                                                     #     ~327 MB installed; only the eval sets need it)
#                                                     #     and the emoji pairs (evals/datasets/emoji.py):
#                                                     #     fonts-noto-color-emoji 9.9 MB + unicode-cldr-core
#                                                     #     17 MB download (241 MB installed)
#   bash evals/datasets/system_deps.sh --browser      # ... plus chromium + chromium-driver (~90 MB download):
#                                                     #     headless Chromium drives the web viewer's tests
#   bash evals/datasets/system_deps.sh --check        # report what is missing, install nothing (exit 1 if any)
#
# What and why (sizes measured on Debian 12 bookworm):
#   poppler-utils          pdftoppm/pdftotext/pdfinfo/pdfseparate/pdfunite     192 KB (+ libpoppler)
#   poppler-data           CMaps for CJK PDFs                                  1.6 MB download, 13 MB installed
#   fontconfig             fc-match, used to locate fonts
#   fonts-wqy-zenhei       Chinese (and Latin) font for the contracts           7.5 MB download, 16 MB installed
#   fonts-noto-cjk         Noto Sans CJK: the layout/OCR tests render their pages with it (the layout
#                          model misses a WenQuanYi title); 56.5 MB download, 91 MB installed
#   fonts-dejavu-core      English serif font for the contracts                 1.1 MB download, 3 MB installed
#   debian-reference-en    Debian Reference 2.100, English PDF, 261 pages       1.7 MB download, 3.8 MB installed
#   debian-reference-zh-cn Debian Reference 2.100, Simplified Chinese PDF, 251 p. 1.9 MB download, 3.9 MB installed
# The PDFs live in /usr/share/debian-reference/ (not /usr/share/doc, which slim images often exclude).
set -euo pipefail

want_openclipart=0
want_browser=0
check_only=0
for arg in "$@"; do
  case "$arg" in
    --openclipart) want_openclipart=1 ;;
    --browser) want_browser=1 ;;
    --check) check_only=1 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "system_deps.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

pkgs=(poppler-utils poppler-data fontconfig fonts-wqy-zenhei fonts-noto-cjk fonts-dejavu-core
      debian-reference-en debian-reference-zh-cn)
if [ "$want_openclipart" = 1 ]; then
  pkgs+=(openclipart-png openclipart-svg fonts-noto-color-emoji unicode-cldr-core)
fi
if [ "$want_browser" = 1 ]; then
  pkgs+=(chromium chromium-driver)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii'; then
    missing+=("$p")
  fi
done
in_missing() { printf '%s\n' "${missing[@]}" | grep -qx "$1"; }
# files the builders use, in case a package is marked installed but its files were removed
reinstall=()
for f in /usr/share/debian-reference/debian-reference.en.pdf \
         /usr/share/debian-reference/debian-reference.zh-cn.pdf; do
  if [ ! -f "$f" ] && ! in_missing debian-reference-en && ! in_missing debian-reference-zh-cn; then
    reinstall=(debian-reference-en debian-reference-zh-cn)
  fi
done
for c in pdftoppm pdftotext pdfinfo pdfseparate pdfunite fc-match; do
  if ! command -v "$c" >/dev/null 2>&1 && ! in_missing poppler-utils && ! in_missing fontconfig; then
    reinstall+=(poppler-utils fontconfig)
    break
  fi
done

if [ "${#missing[@]}" -eq 0 ] && [ "${#reinstall[@]}" -eq 0 ]; then
  echo "system_deps: all present (${pkgs[*]})"
  exit 0
fi
if [ "$check_only" = 1 ]; then
  echo "system_deps: missing: ${missing[*]} ${reinstall[*]}"
  exit 1
fi
install=("${missing[@]}")

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "system_deps: need root (or sudo) to apt-get install: ${install[*]} ${reinstall[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
apt_retry() {  # another apt/dpkg may hold the lock: wait for it
  local i
  for i in 1 2 3; do
    if $SUDO apt-get -o DPkg::Lock::Timeout=60 "$@"; then return 0; fi
    echo "system_deps: apt-get $* failed (try $i of 3), retrying in 5 s" >&2
    sleep 5
  done
  return 1
}

start=$(date +%s)
# refresh package lists when they are missing or older than a day
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' -e '^auxfiles$')" ] \
   || [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mtime +1 -print -quit 2>/dev/null)" ]; then
  apt_retry update -q
fi
echo "system_deps: installing ${install[*]} ${reinstall[*]}"
if [ "${#install[@]}" -gt 0 ]; then
  if ! apt_retry install -y -q --no-install-recommends "${install[@]}"; then
    apt_retry update -q && apt_retry install -y -q --no-install-recommends "${install[@]}"
  fi
fi
if [ "${#reinstall[@]}" -gt 0 ]; then
  apt_retry install -y -q --no-install-recommends --reinstall "${reinstall[@]}"
fi
echo "system_deps: done in $(( $(date +%s) - start )) s"
