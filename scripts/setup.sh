#!/usr/bin/env bash
# Idempotent setup for a fresh Debian machine (run as root): system packages, then the
# project's virtual environment. A second run checks and returns in a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  tesseract-ocr tesseract-ocr-chi-sim tesseract-ocr-eng   # OCR engine and language data
  poppler-utils                                           # pdftoppm for PDF pages (pdf2image)
  postgresql-15                                           # server binaries for the private cluster
  fonts-wqy-zenhei fonts-arphic-uming fonts-arphic-ukai   # CJK fonts: printable transfer notices, sample generator
  util-linux                                              # runuser: postgres refuses to run as root
  libgl1 libglib2.0-0                                     # opencv (RapidOCR's image ops) loads them
  redis-server                                            # Celery's broker for ARCHIVE_EXECUTOR=celery, on loopback
)
# `make test` (ARCHIVE_SETUP_TESTS=1) also needs a browser for the upload page's test
if [[ ${ARCHIVE_SETUP_TESTS:-0} == 1 ]]; then
  APT_PACKAGES+=(chromium                                 # Playwright drives Debian's Chromium headless
                 zip)                                     # Info-ZIP, one of the zip makers the tests hand in
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: run 'sudo make setup' or: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

VENV=.venv
if [[ ! -x $VENV/bin/python ]]; then
  echo "setup: creating $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
stamp=$VENV/.installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "setup: installing the project and its dev extras into $VENV"
  "$VENV/bin/pip" install -q -e '.[dev]'
  touch "$stamp"
fi
