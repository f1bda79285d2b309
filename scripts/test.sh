#!/usr/bin/env bash
# Installs everything the tests need (Debian packages for napari under Xvfb, a virtualenv with
# napari-madgnet[test]) and runs the test suite under a virtual X server. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(xvfb xauth libgl1 libgl1-mesa-dri libegl1 libglx-mesa0 libxkbcommon-x11-0 libxcb-icccm4
    libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-render-util0 libxcb-randr0 libxcb-shape0
    libxcb-xfixes0 libxcb-xkb1 libxcb-cursor0 libxcb-util1 libx11-xcb1 libfontconfig1 libdbus-1-3)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "Missing Debian packages: ${missing[*]}. Install them as root (apt-get install ...) and re-run." >&2
        exit 1
    fi
    echo "[setup] installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

source scripts/_env.sh test

export QT_QPA_PLATFORM=xcb
export MPLBACKEND=Agg
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec xvfb-run -a -s "-screen 0 1600x1000x24" "$PY" -m pytest -ra -p no:cacheprovider "$@"
