"""``madgnet models``: list, add and import models in the user's models folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("models", help="list and register models", description=__doc__)
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    ls = sub.add_parser("list", help="list registered models")
    ls.add_argument("--json", action="store_true", help="machine-readable output (default: a table)")
    ls.set_defaults(func=_list)
    imp = sub.add_parser(
        "import-official",
        help="register the authors' released checkpoints",
        description="Register DIR/model_weights/<Dataset>/model_weights/model_weight(EPOCH 200).pth.tar "
        "for PolypSegData, DSB2018, ISIC2018, COVID19 and BUSI. The release files are not modified.",
    )
    imp.add_argument("release_dir", type=Path, metavar="DIR")
    imp.add_argument(
        "--convert",
        action="store_true",
        help="write project-format copies (smaller, self-describing) instead of linking to the files "
        "(default: link)",
    )
    imp.add_argument(
        "--overwrite",
        action="store_true",
        help="replace models registered under the same names (default: refuse)",
    )
    imp.set_defaults(func=_import)
    add = sub.add_parser("add", help="register a checkpoint file")
    add.add_argument("path", type=Path)
    add.add_argument("--name", help="registry name (default: the file name)")
    add.add_argument(
        "--copy", action="store_true", help="copy the file into the models folder (default: link to it)"
    )
    add.add_argument("--trained-on", help="data set it was trained on (default: none)")
    add.add_argument("--modality", help="imaging modality, e.g. 'nuclei microscopy' (default: none)")
    add.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a model registered under the same name (default: refuse)",
    )
    add.set_defaults(func=_add)
    info = sub.add_parser("info", help="everything known about one model")
    info.add_argument("name")
    info.set_defaults(func=_info)
    where = sub.add_parser("dir", help="print the models folder (MADGNET_MODELS_DIR)")
    where.set_defaults(func=lambda args: print(_models_dir()) or 0)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _models_dir() -> Path:
    from napari_madgnet.paths import models_dir

    return models_dir()


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _list(args: argparse.Namespace) -> int:
    from napari_madgnet.registry import list_models

    entries = list_models()
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=1, default=str))
        return 0
    if not entries:
        print(
            f"No models in {_models_dir()}. Import the released ones with "
            "`madgnet models import-official DIR`, or `madgnet models add FILE`."
        )
        return 0
    rows = [["NAME", "ENCODER", "CLASSES", "MODALITY", "TRAINED ON", "SOURCE", "STATUS"]]
    for e in entries:
        rows.append(
            [
                e.name,
                e.encoder or "?",
                str(e.num_classes or "?"),
                e.modality or "-",
                e.trained_on or "-",
                e.source or "-",
                "ok" if e.available else f"unusable: {e.problem}",
            ]
        )
    print(_table(rows))
    print(f"\n{len(entries)} model(s) in {_models_dir()}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from napari_madgnet.registry import import_official

    try:
        entries = import_official(args.release_dir, convert=args.convert, overwrite=args.overwrite)
    except (ValueError, FileExistsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for e in entries:
        print(f"registered {e.name}  ({e.modality}; {e.encoder}) -> {e.path}")
    return 0


def _add(args: argparse.Namespace) -> int:
    from napari_madgnet.registry import register_model

    try:
        e = register_model(
            args.path,
            args.name,
            copy=args.copy,
            trained_on=args.trained_on,
            modality=args.modality,
            overwrite=args.overwrite,
        )
    except (ValueError, FileExistsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"registered {e.name} ({e.encoder}) -> {e.path}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from napari_madgnet.registry import resolve_model

    try:
        e = resolve_model(args.name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(e.to_dict(), indent=1, default=str))
    return 0
