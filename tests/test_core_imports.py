"""The core must stay usable on headless training servers: no Qt, magicgui or napari imports."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "napari", "vispy")

SCRIPT = """
import importlib, json, pkgutil, sys
import napari_madgnet, src_train
names = []
for pkg in (napari_madgnet, src_train):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if info.name.startswith("napari_madgnet.widgets") or info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)
        names.append(info.name)
loaded = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"imported": names, "loaded": loaded}))
"""


def test_core_modules_import_no_gui_toolkit() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "napari_madgnet.io" in result["imported"]
    assert "napari_madgnet.cli" in result["imported"]
    leaked = [name for name in FORBIDDEN if name in result["loaded"]]
    assert not leaked, f"core modules imported GUI packages: {leaked}"
