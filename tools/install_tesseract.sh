#!/bin/sh
# Tesseract 5 (Debian bookworm packages, unpacked, no root) into assets/tesseract for
# `python -m jobs.bench_reader`: an OCR engine independent of the RapidOCR that the encoder's
# legibility check and the evaluation's spotter use.
set -eu
DEST="${1:-assets/tesseract}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
apt-get download tesseract-ocr tesseract-ocr-eng libtesseract5 liblept5 libwebpmux3 libopenjp2-7 >/dev/null
cd - >/dev/null
mkdir -p "$DEST"
for deb in "$TMP"/*.deb; do dpkg -x "$deb" "$DEST"; done
LD_LIBRARY_PATH="$DEST/usr/lib/x86_64-linux-gnu" "$DEST/usr/bin/tesseract" --version | head -1
