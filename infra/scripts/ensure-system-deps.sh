#!/usr/bin/env bash
# Installs the Debian packages docflow needs when they are missing: poppler-utils (pdfinfo/pdftoppm) for PDF
# rendering, tesseract for OCR and, with --test, a PostgreSQL server and Chromium for the integration and browser
# tests. Needs root for apt-get.
set -euo pipefail

need=()
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
command -v tesseract >/dev/null 2>&1 || need+=(tesseract-ocr tesseract-ocr-eng)
if [[ "${1:-}" == "--test" ]]; then
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
    # Headless browser tests: the review task in Label Studio, the Prefect UI.
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
fi
[[ ${#need[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null 2>&1; then
    echo "docflow needs these system packages: ${need[*]}" >&2
    echo "Install them (Debian/Ubuntu: apt-get install ${need[*]}) and run make again." >&2
    exit 1
fi
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
echo "installing system packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
