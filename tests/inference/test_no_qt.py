"""The inference core, registry and CLI load without Qt, magicgui or napari."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_core_imports_no_gui():
    code = (
        "import sys; import napari_madgnet.inference, napari_madgnet.registry, napari_madgnet.cli; "
        "napari_madgnet.cli.build_parser(); "
        "bad = [m for m in ('qtpy', 'PyQt5', 'PySide2', 'magicgui', 'napari') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={"PYTHONPATH": str(REPO)}, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
