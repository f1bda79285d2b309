"""The ``madgnet`` command line: one sub-command per module in this package.

Each sub-command module defines ``add_parser(subparsers)`` (registering its arguments and
``func``) so that this file only dispatches. Modules are imported when the CLI starts; none of
them imports Qt or napari.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from napari_madgnet import __version__

#: Sub-command modules, in the order ``madgnet --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "predict",
    "models",
    "train",
    "finetune",
    "evaluate",
    "compare",
    "export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="madgnet",
        description="MADGNet medical image segmentation: predict, train, fine-tune, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"napari-madgnet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"napari_madgnet.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from napari_madgnet.errors import is_user_error

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except Exception as exc:
        # a problem the user can fix is one line; anything else is a bug and keeps its traceback
        if not is_user_error(exc):
            raise
        print(f"madgnet: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
