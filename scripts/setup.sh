#!/usr/bin/env bash
# Creates .venv with the app's packages; with --dev also the test tools and Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[[ "${1:-}" == "--dev" ]] && dev=1

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if (( dev )); then
    .venv/bin/python -m pip install --quiet -r requirements-dev.txt
    if ! command -v chromium >/dev/null 2>&1; then
        sudo_cmd=""
        [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
        $sudo_cmd apt-get update -qq
        $sudo_cmd apt-get install -y -qq chromium >/dev/null
    fi
else
    .venv/bin/python -m pip install --quiet -r requirements.txt
fi
