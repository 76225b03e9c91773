#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian/Ubuntu machine (or a Pi OS):
# system packages (when run as root or with sudo), then a virtual environment in .venv.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(mosquitto mosquitto-clients postgresql alsa-utils sox espeak-ng libsndfile1 docker-compose chromium)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null; then
    echo "missing system packages: ${missing[*]} (run as root to install them)" >&2
  else
    echo "installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    # policy-rc.d keeps apt from starting (or failing to start) services in containers.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
# torch first and pinned: a bare or newer torch pulls a multi-GB CUDA build on x86-64.
# Set TORCH_INDEX_URL to an index that serves torch's CPU wheels to take that wheel there.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==2.13.0" ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
    2>&1 | grep -v "is ignored" || true
fi
.venv/bin/python -m pip install -q -e ".[ml,dashboard,reports,notify,dev]" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import torch, transformers, maad, shared" >/dev/null
echo "ready: .venv (torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"
