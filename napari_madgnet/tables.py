"""Tables (measurements, comparison reports) written as CSV, atomically.

A table is either a dict of equal-length columns (``{"label": [...], "area_px": [...]}``) or a
list of row dicts with the same keys (``[{"slice": 0, "dice": 0.9}, ...]``); both write the same
CSV. Floats are written at full precision; missing or undefined values (nan) as ``nan`` and
infinities as ``inf``, which pandas, numpy and spreadsheets read back.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_madgnet.io import atomic_path

Table = Mapping[str, Sequence[Any] | np.ndarray] | Sequence[Mapping[str, Any]]


def table_rows(table: Table) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a table in either form; ``ValueError`` for ragged columns or rows."""
    if isinstance(table, Mapping):
        header = list(table)
        columns = [list(np.asarray(table[k]).tolist()) for k in header]
        lengths = {len(c) for c in columns}
        if len(lengths) > 1:
            sizes = dict(zip(header, map(len, columns), strict=True))
            raise ValueError(f"table columns differ in length: {sizes}")
        return header, [list(r) for r in zip(*columns, strict=True)]
    rows = list(table)
    header = list(rows[0]) if rows else []
    for i, row in enumerate(rows):
        if list(row) != header:
            raise ValueError(f"row {i} has columns {list(row)}, expected {header}.")
    return header, [[_plain(row[k]) for k in header] for row in rows]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def write_csv(table: Table, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``table`` to ``path`` as CSV (comma, header row) atomically; returns the path.

    An existing file is kept unless ``overwrite`` (``FileExistsError`` names it).
    """
    header, rows = table_rows(table)
    target = Path(path)
    with atomic_path(target, overwrite=overwrite) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return target
