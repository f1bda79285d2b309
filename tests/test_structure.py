"""Where things live: one concept in one place, imports that run one way, tests that can fail.

Static checks over the source tree (Python's ``ast``), so they are exact and fast.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "napari_madgnet"


def _modules(package: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package __init__)."""
    out = {}
    for f in package.rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


def _imports(name: str, is_pkg: bool, tree: ast.AST, known: dict) -> set[str]:
    """Modules imported anywhere in a module (top level or inside functions)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")[: None if is_pkg else -1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return found


def test_the_core_never_imports_src_train() -> None:
    """Recipes sit above the core: ``madgnet train`` finds datasets through entry points."""
    mods = _modules(CORE)
    offenders = [
        name
        for name, (f, is_pkg) in mods.items()
        if any(m.split(".")[0] == "src_train" for m in _imports(name, is_pkg, ast.parse(f.read_text()), mods))
    ]
    assert offenders == []


def test_core_modules_import_each_other_one_way() -> None:
    """No import cycles between core modules (package ``__init__`` re-exports aside)."""
    mods = _modules(CORE)
    edges = {}
    for name, (f, is_pkg) in mods.items():
        if is_pkg or ".widgets" in name:
            continue
        targets = _imports(name, is_pkg, ast.parse(f.read_text()), mods)
        edges[name] = {t for t in targets if t in mods and t != name and not mods[t][1]}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in edges.get(node, ()):
            if nxt in path:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif len(path) < 12:
                visit(nxt, [*path, nxt])

    for start in edges:
        visit(start, [start])
    assert cycles == []
    # and the pairs issue 11 named, whose cycles ran through package imports
    pretrained = ast.parse((CORE / "model" / "pretrained.py").read_text())
    assert not any(
        "encoders" in m for m in _imports("napari_madgnet.model.pretrained", False, pretrained, mods)
    )
    registry = ast.parse((CORE / "registry.py").read_text())
    assert not any("inference" in m for m in _imports("napari_madgnet.registry", False, registry, mods))


def _asserts_that_cannot_fail(tree: ast.AST) -> list[int]:
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            test = node.test
            if (isinstance(test, ast.Constant) and test.value) or (
                isinstance(test, ast.BoolOp)
                and isinstance(test.op, ast.Or)
                and any(isinstance(v, ast.Constant) and v.value for v in test.values)
            ):
                bad.append(node.lineno)
    return bad


def test_no_test_asserts_something_always_true() -> None:
    """``assert x or True`` cannot fail; neither can ``assert True`` or ``assert "text"``."""
    found = {
        str(f.relative_to(ROOT)): lines
        for f in (ROOT / "tests").rglob("*.py")
        if (lines := _asserts_that_cannot_fail(ast.parse(f.read_text())))
    }
    assert found == {}


def test_the_check_finds_an_assert_that_cannot_fail() -> None:
    assert _asserts_that_cannot_fail(ast.parse("assert x or True\nassert y\n")) == [1]


def _calls(tree: ast.AST, name: str) -> int:
    return sum(
        1
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) == name or getattr(node.func, "attr", None) == name)
    )


def test_one_tiler_one_dice_one_resolver() -> None:
    """Validation and deployment share the tiler; Dice is ``metrics.dice``; models resolve once."""
    sources = {f: ast.parse(f.read_text()) for f in CORE.rglob("*.py")}
    window_users = sorted(str(f.relative_to(CORE)) for f, t in sources.items() if _calls(t, "weight_window"))
    assert window_users == ["inference/tiling.py"]
    tiler_users = sorted(
        str(f.relative_to(CORE)) for f, t in sources.items() if _calls(t, "iter_sliding_window")
    )
    assert tiler_users == ["inference/plane.py"]
    engine = (CORE / "training" / "engine.py").read_text()
    assert "predict_plane(" in engine and "dice(" in engine and "2 * (" not in engine
    for f, tree in sources.items():
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert not ({"resolve_model_path", "tiled_logits", "load_trained"} & defined), f
        if f.name != "registry.py":
            assert "resolve_model" not in defined, f


def test_the_finetune_widget_holds_no_training_logic() -> None:
    """Steps/epochs, names, keeping the best and registering are the core's (shared with the CLI)."""
    widget = (CORE / "widgets" / "_finetune.py").read_text()
    for core_call in ("with_length(", "plan_output(", "describe_result(", "BACKBONES"):
        assert core_call in widget
    for logic in ("_keep_best", "register_model", "re.compile", "math.ceil", "copyfile", "ENCODERS = "):
        assert logic not in widget
    segment = (CORE / "widgets" / "_segment.py").read_text()
    assert ".repostprocess" in segment and "replace(result, mask=" not in segment
