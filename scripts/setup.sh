#!/usr/bin/env bash
# Creates .venv with the app's packages; with --dev also the test tools and Debian's chromium.
# What is installed already is skipped: a stamp in the venv records the hash of the requirements it was made from.
# VENV and PYTHON choose another venv and interpreter (make test-py310: .venv310 with python3.10).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
python=${PYTHON:-python3}
requirements=requirements.txt
[[ "${1:-}" == "--dev" ]] && requirements=requirements-dev.txt

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
wanted=$(cat requirements.txt "$requirements" | sha256sum | cut -c1-16)
stamp="$venv/.installed-$(basename "$requirements" .txt)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$wanted" > "$stamp"
fi

if [[ "$requirements" == requirements-dev.txt ]] && ! command -v chromium >/dev/null 2>&1; then
    # the browser tests drive Debian's chromium; apt-get needs root (sudo only when not root already)
    as_root=()
    (( $(id -u) != 0 )) && as_root=(sudo)
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq chromium >/dev/null
fi
