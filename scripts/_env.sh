# Shared set-up for the README's commands: source it with the extras to install, e.g.
#   source scripts/_env.sh headless   (core + CLI, no Qt)
#   source scripts/_env.sh test       (napari, Qt, pytest)
# It sets $PY to a Python that has napari-madgnet installed (editable) with those extras.
#
# - Inside an active virtualenv or conda environment, that environment is used as it is.
# - Otherwise a virtualenv .venv/<extras> is made. It is isolated from the system's packages, so
#   their versions and warnings cannot leak into the project; except when the system Python
#   already has PyTorch (a CUDA build, say): then it is made with --system-site-packages, the only
#   way to use that PyTorch without replacing it.
# - torch==2.13.0 is installed only when no torch is importable (on a CPU machine that is the
#   CPU wheel; GPU users should install their CUDA build of PyTorch first).
# Idempotent: a second run with an unchanged pyproject.toml installs nothing.

set -euo pipefail
_extras="${1:-headless}"
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ -n "${VIRTUAL_ENV:-}" || -n "${CONDA_PREFIX:-}" ]]; then
    PY="$(command -v python)"
else
    _venv="$_root/.venv/$_extras"
    if [[ ! -x "$_venv/bin/python" ]]; then
        if python3 -c 'import torch' 2>/dev/null; then
            echo "[setup] creating virtualenv $_venv (with the system's packages, to keep its PyTorch)"
            python3 -m venv --system-site-packages "$_venv"
        else
            echo "[setup] creating virtualenv $_venv"
            python3 -m venv "$_venv"
        fi
    fi
    PY="$_venv/bin/python"
fi

# pip with the noise of this machine's local package index filtered out; pip's status is kept.
_pip() {
    "$PY" -m pip install --disable-pip-version-check -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
    return "${PIPESTATUS[0]}"
}

_stamp="$("$PY" -c 'import sys; print(sys.prefix)')/.napari-madgnet-$_extras.stamp"
_want="$(cat "$_root/pyproject.toml" | sha256sum | cut -c1-16) $_root"
if [[ -f "$_stamp" && "$(cat "$_stamp")" == "$_want" ]] && "$PY" -c 'import napari_madgnet, torch' 2>/dev/null; then
    echo "[setup] environment up to date ($PY)"
else
    _t0=$(date +%s)
    if ! "$PY" -c 'import torch' 2>/dev/null; then
        echo "[setup] no PyTorch found: installing torch==2.13.0"
        _pip "torch==2.13.0"
    else
        echo "[setup] keeping the installed PyTorch $("$PY" -c 'import torch; print(torch.__version__)')"
    fi
    _spec="."
    [[ "$_extras" != "headless" ]] && _spec=".[$_extras]"
    echo "[setup] installing napari-madgnet$([[ $_spec == . ]] || echo "[$_extras]") (editable)"
    (cd "$_root" && _pip -e "$_spec")
    "$PY" -c 'import napari_madgnet, torch' || { echo "[setup] installation failed" >&2; exit 1; }
    echo "$_want" > "$_stamp"
    echo "[setup] done in $(( $(date +%s) - _t0 )) s"
fi
export PY
