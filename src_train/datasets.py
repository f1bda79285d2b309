"""The paper's five training sets and their seen/unseen test sets, read from the authors' layouts.

The authors distribute each dataset as a folder with split files (``*_frame.csv``, columns
``image_path`` and ``mask_path``) beside ``images``/``masks`` folders. Expected layout under one
``root`` (the folder you pass as ``data.root``)::

    root/PolypSegData/train_frame.csv
    root/PolypSegData/TrainDataset/{images,masks}/...
    root/PolypSegData/{Kvasir,CVC-ClinicDB,CVC-300,CVC-ColonDB,ETIS-LaribPolypDB}_test_frame.csv
    root/PolypSegData/TestDataset/TestDataset/<name>/{images,masks}/...
    root/<Dataset>/{train,val,test}_frame.csv          # ISIC2018, BUSI, DSB2018, COVID19
    root/<Dataset>/{images,masks}/...                  # paths in the csv are relative to these
    root/<Unseen>/test_frame.csv + {images,masks}/     # PH2, STU, MonuSeg2018, COVID19_2

The polyp layout follows the release's loader; for the other sets the same frame convention is
assumed (check the csv columns of your download; a ``val_frame.csv`` is used when present,
otherwise a seeded 10 % of the training frame validates).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    seen_tests: tuple[str, ...]
    unseen_tests: tuple[str, ...]
    paper_dsc: dict[str, float]  # the paper's DSC (%) per test set


DATASETS: dict[str, DatasetSpec] = {
    "PolypSegData": DatasetSpec(
        "PolypSegData",
        ("CVC-ClinicDB", "Kvasir"),
        ("CVC-300", "CVC-ColonDB", "ETIS-LaribPolypDB"),
        {
            "CVC-ClinicDB": 93.9,
            "Kvasir": 90.7,
            "CVC-300": 87.4,
            "CVC-ColonDB": 77.5,
            "ETIS-LaribPolypDB": 77.0,
        },
    ),
    "ISIC2018": DatasetSpec("ISIC2018", ("ISIC2018",), ("PH2",), {"ISIC2018": 90.2, "PH2": 91.3}),
    "BUSI": DatasetSpec("BUSI", ("BUSI",), ("STU",), {"BUSI": 81.3, "STU": 88.4}),
    "DSB2018": DatasetSpec("DSB2018", ("DSB2018",), ("MonuSeg2018",), {"DSB2018": 92.0, "MonuSeg2018": 46.7}),
    "COVID19": DatasetSpec("COVID19", ("COVID19",), ("COVID19_2",), {"COVID19": 83.7, "COVID19_2": 72.2}),
}


def read_frame(path: Path) -> list[dict[str, str]]:
    """Rows of a split file; a missing file is an error that shows the expected layout."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: split file missing; see src_train/README.md for the expected layout."
        )
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"image_path", "mask_path"} <= set(rows[0]):
        raise ValueError(f"{path}: expected columns image_path and mask_path, found {sorted(rows[0])}.")
    return rows


def frame_pairs(
    root: Path, dataset: str, split: str, test_name: str | None = None
) -> list[tuple[Path, Path]]:
    """(image, mask) paths of one split of one dataset in the authors' layout."""
    base = root / dataset
    if dataset == "PolypSegData":
        if split == "train":
            rows = read_frame(base / "train_frame.csv")
            folder = base / "TrainDataset"
        else:
            rows = read_frame(base / f"{test_name}_test_frame.csv")
            folder = base / "TestDataset" / "TestDataset" / str(test_name)
    else:
        target = root / (test_name or dataset)
        rows = read_frame(target / f"{split}_frame.csv")
        folder = target
    return [(folder / "images" / r["image_path"], folder / "masks" / r["mask_path"]) for r in rows]


def dataset_items(name: str, root: str | None, cfg: Any) -> tuple[list, list, dict[str, list]]:
    """Training, validation and test items (``FileItem``s, read lazily) of a named dataset.

    Registered in pyproject.toml under the entry-point group ``napari_madgnet.datasets`` (one entry
    per dataset name), which is how ``madgnet train`` finds it without the core importing src_train.
    """
    from napari_madgnet.training.data import FileItem, split_items

    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    if not root:
        raise ValueError("data.root is not set: point it at the folder holding the datasets.")
    base = Path(root)

    def items(pairs: list[tuple[Path, Path]]) -> list[FileItem]:
        return [FileItem(i, m, "binary", 1, cfg.normalization) for i, m in pairs]

    train = items(frame_pairs(base, name, "train"))
    val_csv = base / name / "val_frame.csv"
    if val_csv.is_file():
        val = items(frame_pairs(base, name, "val"))
    else:
        split = split_items(train, cfg.val_fraction or 0.1, cfg.seed)
        train, val = split.train, split.val
    spec = DATASETS[name]
    tests = {}
    for test in (*spec.seen_tests, *spec.unseen_tests):
        try:
            tests[test] = items(frame_pairs(base, name, "test", None if test == name else test))
        except FileNotFoundError:
            tests[test] = []  # not downloaded: reported as missing by the evaluation
    return train, val, tests
