"""``madgnet export MODEL --format onnx|torchscript|bioimageio -o OUT``: a model for other tools."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_madgnet.cli._common import user_errors
from napari_madgnet.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX, TorchScript or a bioimage.io package",
        description="Export MODEL (a registered name or a checkpoint file) as ONNX (opset >= 17, any "
        "batch size, height and width), TorchScript (loads with torch.jit.load, no napari-madgnet "
        "needed) or a bioimage.io model package (a folder, or OUT.zip). The written file is loaded "
        "back and compared with the PyTorch model; the preprocessing the model expects is recorded "
        "in it. ONNX and bioimage.io need: pip install 'napari-madgnet[export]'.",
    )
    p.add_argument("model", metavar="MODEL", help="registered model name or checkpoint file")
    p.add_argument(
        "--format",
        "-f",
        required=True,
        choices=["onnx", "torchscript", "bioimageio"],
        help="onnx, torchscript or bioimageio (required)",
    )
    p.add_argument(
        "-o",
        "--out",
        required=True,
        type=Path,
        metavar="OUT",
        help="file (or package folder/.zip) to write (required)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (default: refuse)")
    p.add_argument(
        "--opset", type=int, default=17, help="ONNX opset, >= 17; onnx and bioimageio (default: 17)"
    )
    bio = p.add_argument_group("bioimage.io package")
    bio.add_argument("--name", help="model name in rdf.yaml (default: MADGNet <model name>)")
    bio.add_argument(
        "--author",
        action="append",
        default=[],
        help="author name, repeat for several (default: your login name)",
    )
    bio.add_argument(
        "--license", default="CC-BY-4.0", help="SPDX licence id of the weights (default: CC-BY-4.0)"
    )
    bio.add_argument(
        "--data-citation", help="citation text of the training data (default: the one the checkpoint records)"
    )
    bio.add_argument("--data-doi", help="DOI of the training data's citation (default: none)")
    bio.add_argument("--data-url", help="URL of the training data's citation (default: none)")
    bio.add_argument(
        "--test-size",
        type=int,
        default=128,
        help="side of the test input crop, a multiple of 32 (default: 128)",
    )
    p.set_defaults(func=run)


@user_errors
def run(args: argparse.Namespace) -> int:
    from napari_madgnet.export import export_model

    options: dict = {}
    if args.format in ("onnx", "bioimageio"):
        options["opset"] = args.opset
    if args.format == "bioimageio":
        from napari_madgnet.export.bioimageio import Citation

        if (args.data_doi or args.data_url) and not args.data_citation:
            raise ConfigError("--data-doi/--data-url need --data-citation TEXT")
        if args.data_citation:
            if not (args.data_doi or args.data_url):
                raise ConfigError("--data-citation needs --data-doi DOI or --data-url URL")
            options["training_data"] = [Citation(args.data_citation, doi=args.data_doi, url=args.data_url)]
        options.update(name=args.name, authors=args.author, license=args.license, test_size=args.test_size)
    elif any(v for v in (args.name, args.author, args.data_citation, args.data_doi, args.data_url)):
        raise ConfigError("--name, --author and --data-* apply to --format bioimageio only")
    result = export_model(args.model, args.format, args.out, overwrite=args.overwrite, **options)
    print(result.summary())
    return 0
