"""One formatter for metric tables: text for the CLI, cells for the widget, CSV/TSV/JSON.

Rows are the dicts ``{"metric", "region", "value", "details", "note"}`` that
:func:`napari_scigen.metrics.evaluate.run_evaluate` returns in ``provenance["table"]``.
The CLI prints :func:`format_table`; the Metrics widget shows :func:`format_value` and
:func:`summarize_details` in its cells and copies :func:`rows_to_tsv`; both export with
:func:`write_rows_csv` and :func:`write_rows_json`.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..core.provenance import to_jsonable
from .evaluate import table_rows_for_json

#: Table columns of exports, in order.
COLUMNS = ("metric", "value", "region", "details", "note")


def format_value(value: Any) -> str:
    """Short text of a metric value (``n/a`` for NaN/None, ``inf`` for infinity)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _exact(value: Any) -> str:
    """Full-precision text of a value (what is copied and exported)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return repr(float(value)) if isinstance(value, (float, int, np.floating)) else str(value)


def summarize_details(details: dict | None) -> str:
    """One line summarising a row's details (lists longer than 4 become a count)."""
    parts = []
    items = sorted((details or {}).items(), key=lambda item: isinstance(item[1], (list, tuple)))
    for key, value in items:
        if isinstance(value, (list, tuple)):
            text = (
                "[" + ", ".join(format_value(v) for v in value) + "]"
                if len(value) <= 4
                else f"[{len(value)} values]"
            )
        elif isinstance(value, dict):
            text = "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
        else:
            text = format_value(value)
        parts.append(f"{key}={text}")
    return "; ".join(parts)


def rows_to_tsv(rows: list[dict], *, header: bool = True) -> str:
    """Tab-separated text of evaluation rows (full-precision values), one line per row.

    Parameters
    ----------
    rows : list of dict
        Rows as returned in ``provenance["table"]`` by ``run_evaluate``.
    header : bool
        Start with a line of column names.

    Returns
    -------
    str
        Columns ``metric, value, region, details, note``; ``details`` is compact JSON.
    """
    lines = ["\t".join(COLUMNS)] if header else []
    for row, clean in zip(rows, table_rows_for_json(rows), strict=True):
        cells = [
            str(row["metric"]),
            _exact(row["value"]),
            str(row["region"]),
            json.dumps(clean.get("details", {}), sort_keys=True),
            str(row.get("note", "")),
        ]
        lines.append("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in cells))
    return "\n".join(lines) + "\n"


def write_rows_csv(rows: list[dict], path: str | Path) -> Path:
    """Write evaluation rows as CSV (``metric, value, region, details, note``).

    Parameters
    ----------
    rows : list of dict
        Rows as returned in ``provenance["table"]`` by ``run_evaluate``.
    path : str or pathlib.Path
        Target file (overwritten).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    target = Path(path)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row, clean in zip(rows, table_rows_for_json(rows), strict=True):
            writer.writerow(
                [
                    row["metric"],
                    _exact(row["value"]),
                    row["region"],
                    json.dumps(clean.get("details", {}), sort_keys=True),
                    row.get("note", ""),
                ]
            )
    return target


def write_rows_json(rows: list[dict], path: str | Path, *, provenance: dict | None = None) -> Path:
    """Write evaluation rows (and the run's provenance) as strict JSON.

    Parameters
    ----------
    rows : list of dict
        Rows as returned in ``provenance["table"]`` by ``run_evaluate``.
    path : str or pathlib.Path
        Target file (overwritten).
    provenance : dict, optional
        The evaluation's provenance; written with ``"table"`` replaced by ``rows``.
        NaN values become ``null``, infinities the strings ``"inf"``/``"-inf"``.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    record = dict(to_jsonable(provenance or {}))
    record["table"] = rows
    clean = table_rows_for_json([record])[0]
    target = Path(path)
    target.write_text(json.dumps(clean, indent=2, allow_nan=False), encoding="utf-8")
    return target


def summarize_row(row: dict) -> str:
    """A readable one-line summary of a row: reference, error, std, model, note."""
    details = row.get("details") or {}
    parts = []
    if "reference" in details and "relative_error" in details:
        parts.append(
            f"reference {format_value(details['reference'])}, "
            f"rel. error {format_value(details['relative_error'])}"
        )
    if "std" in details:
        parts.append(f"std {format_value(details['std'])}")
    if "net" in details and row["metric"] == "lpips":
        parts.append(f"net {details['net']}")
    if "model" in details:
        parts.append(f"model {details['model']}")
    if "data_range" in details:
        parts.append(f"data range {format_value(details['data_range'])}")
    if row.get("note"):
        parts.append(row["note"])
    return "; ".join(parts)


def format_table(rows: list[dict]) -> str:
    """A plain-text table of evaluation rows."""
    header = ("metric", "region", "value", "details")
    body = [
        (row["metric"], row["region"], format_value(row["value"]), summarize_row(row))
        for row in rows
    ]
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)
    ]
    widths[-1] = 0
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * max(w, len(h)) for h, w in zip(header, widths, strict=True)))
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body
    )
    return "\n".join(lines)
