#!/usr/bin/env bash
# One-shot setup on a fresh machine (Python 3.11, pip, apt): system packages, venv, pinned deps.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
ldconfig -p 2>/dev/null | grep -q libespeak-ng.so.1 || need_apt+=(libespeak-ng1)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)  # the gallery test plays reports/index.html
# the voices stage's held-out voices (flite's voices ship in its package; festival's each in a festvox package)
command -v flite >/dev/null 2>&1 || need_apt+=(flite)
command -v festival >/dev/null 2>&1 || need_apt+=(festival)
for voice in festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts; do
  dpkg -s "$voice" >/dev/null 2>&1 || need_apt+=("$voice")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need_apt[*]} with apt-get"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
  else
    echo "setup: missing ${need_apt[*]}: run 'sudo apt-get install ${need_apt[*]}' and retry" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"nwt needs Python 3.11, found {sys.version}"'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch==2.13.0 is pinned in pyproject.toml: pip takes the local CPU wheel, never a CUDA build.
# constraints.txt pins every transitive package to the set tested together (`pip freeze`).
# Everything: the core (what generating from a bundle needs) and every extra pyproject.toml defines
# (pipeline, test, …), read from the file so that an extra added there is installed here too.
extras=$(.venv/bin/python -c 'import tomllib
print(",".join(tomllib.load(open("pyproject.toml", "rb"))["project"].get("optional-dependencies", {})))')
echo "setup: installing nwt with the extras [$extras]"
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".[$extras]"
.venv/bin/pip check
