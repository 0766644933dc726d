"""Evaluation inputs: same-lesion pairs (lesion-tracking ground truth) and LesaNet labels.

- :func:`read_same_lesion_pairs` reads the DLS pairs CSV (``dls/dls_valid_pairs.csv``): each row
  says the lesion measured on ``source_File_name`` and the one on ``target_File_name`` are one
  physical lesion. ``source_recist_diameter_mm`` / ``target_recist_diameter_mm`` (``long;short``)
  tell apart several lesions measured on one key slice.
- :func:`read_lesanet_labels` reads LesaNet's text-mined labels (``relevant_labels``,
  ``;``-separated ontology terms) per ``File_name``.

Both check every row and raise one :class:`InvalidInputError` listing every problem (file, line,
column, what was expected).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass

from lesionkg.core.errors import InvalidInputError, Problem
from lesionkg.loaders.guards import regular_file_refusal

PAIR_COLUMNS = ("source_File_name", "target_File_name")
PAIR_DIAMETERS = ("source_recist_diameter_mm", "target_recist_diameter_mm")
LABEL_COLUMNS = ("File_name", "relevant_labels")


@dataclass(frozen=True, slots=True)
class SameLesionPair:
    """One ground-truth pair; diameters are (long, short) mm, ``None`` when the file has none."""

    pair_id: str
    source_file_name: str
    target_file_name: str
    source_diameters_mm: tuple[float, float] | None
    target_diameters_mm: tuple[float, float] | None
    line: int


@dataclass(frozen=True, slots=True)
class LesionLabels:
    """LesaNet's relevant labels of the lesion(s) on one key slice."""

    file_name: str
    labels: frozenset[str]
    line: int


def _refused(
    path: str, reason: str, line: int | None = None, rule: str | None = None
) -> InvalidInputError:
    return InvalidInputError(
        [Problem(path, line, None, reason, rule)], outcome="nothing was evaluated"
    )


def _rows(path: str, required: tuple[str, ...], kind: str) -> Iterator[tuple[int, dict]]:
    """``(line, row)`` of a CSV file whose header has the ``required`` columns."""
    not_regular = regular_file_refusal(path)
    if not_regular is not None:
        # a FIFO would block open() until a writer comes
        raise _refused(path, not_regular.reason, rule=not_regular.rule)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise _refused(path, f"expected a {kind} header with {', '.join(missing)}", 1)
            for row in reader:
                yield reader.line_num, row
    except FileNotFoundError:
        raise _refused(path, "file not found") from None
    except UnicodeDecodeError:
        raise _refused(path, "not a UTF-8 CSV text file") from None
    except OSError as exc:
        raise _refused(path, f"cannot be read ({exc.strerror})") from None


def _diameters(cell: str | None) -> tuple[float, float] | None:
    if cell is None or not cell.strip():
        return None
    parts = cell.split(";")
    if len(parts) != 2:
        raise ValueError
    long_mm, short_mm = (float(p) for p in parts)
    if not (long_mm > 0 and short_mm > 0):
        raise ValueError
    return long_mm, short_mm


def read_same_lesion_pairs(path: str | os.PathLike[str]) -> list[SameLesionPair]:
    """Every pair of the CSV; a bad row raises :class:`InvalidInputError` (all rows checked)."""
    source = os.fspath(path)
    pairs: list[SameLesionPair] = []
    problems: list[Problem] = []
    for line, row in _rows(source, PAIR_COLUMNS, "same-lesion pairs"):
        names = {}
        for column in PAIR_COLUMNS:
            value = (row.get(column) or "").strip()
            if not value.endswith(".png"):
                problems.append(
                    Problem(source, line, column, f"expected a key-slice File_name, got {value!r}")
                )
            names[column] = value
        diameters = {}
        for column in PAIR_DIAMETERS:
            try:
                diameters[column] = _diameters(row.get(column))
            except ValueError:
                problems.append(
                    Problem(
                        source,
                        line,
                        column,
                        f"expected 'long;short' positive millimetres, got {row.get(column)!r}",
                    )
                )
        if names["source_File_name"] and names["source_File_name"] == names["target_File_name"]:
            problems.append(Problem(source, line, None, "source and target are the same key slice"))
        pairs.append(
            SameLesionPair(
                pair_id=(row.get("pair_id") or str(len(pairs) + 1)).strip(),
                source_file_name=names["source_File_name"],
                target_file_name=names["target_File_name"],
                source_diameters_mm=diameters.get("source_recist_diameter_mm"),
                target_diameters_mm=diameters.get("target_recist_diameter_mm"),
                line=line,
            )
        )
    if problems:
        raise InvalidInputError(problems, outcome="nothing was evaluated")
    if not pairs:
        raise _refused(source, "no pairs in the file")
    return pairs


def read_lesanet_labels(path: str | os.PathLike[str]) -> list[LesionLabels]:
    """Relevant labels per key slice; rows without any relevant label are kept with none."""
    source = os.fspath(path)
    out: list[LesionLabels] = []
    problems: list[Problem] = []
    for line, row in _rows(source, LABEL_COLUMNS, "LesaNet labels"):
        name = (row.get("File_name") or "").strip()
        if not name.endswith(".png"):
            problems.append(
                Problem(source, line, "File_name", f"expected a key-slice File_name, got {name!r}")
            )
            continue
        terms = frozenset(
            t.strip() for t in (row.get("relevant_labels") or "").split(";") if t.strip()
        )
        out.append(LesionLabels(name, terms, line))
    if problems:
        raise InvalidInputError(problems, outcome="nothing was evaluated")
    return out
