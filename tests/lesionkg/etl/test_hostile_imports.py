"""The database side of the hostile-input corpus (issue 15): every bad input through ``lesionkg
etl`` and ``lesionkg load deeplesion`` ends in ``Error: ...`` with its rule, exit 1, no traceback,
and a graph that is the same, node for node and relationship for relationship, as before.

The inputs are generated here, small; the readers' own checks of them are in
``tests/loaders/test_hostile_input.py``, whose generators this reuses.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import DATABASE
from PIL import Image

from lesionkg.cli import main
from lesionkg.loaders.deeplesion import COLUMNS
from lesionkg.synthetic.bookmarks import write_synthetic_bookmarks
from lesionkg.synthetic.cohort.writer import write_synthetic_dl_info

#: one Cypher read: every node (labels, properties) and relationship (type, ends, properties)
SNAPSHOT = """
MATCH (n)
WITH collect([elementId(n), labels(n), properties(n)]) AS nodes
OPTIONAL MATCH (a)-[r]->(b)
RETURN nodes, collect([elementId(r), type(r), elementId(a), elementId(b), properties(r)]) AS rels
"""


def graph_hash(driver) -> tuple[str, int, int]:
    """A hash of every node and relationship with their properties, and the two counts."""
    records, _, _ = driver.execute_query(SNAPSHOT, database_=DATABASE)
    (record,) = records
    nodes = sorted(json.dumps(n, sort_keys=True, default=str) for n in record["nodes"])
    rels = sorted(json.dumps(r, sort_keys=True, default=str) for r in record["rels"])
    digest = hashlib.sha256("\n".join([*nodes, "--", *rels]).encode()).hexdigest()
    return digest, len(nodes), len(rels)


@pytest.fixture
def baseline(empty_graph, cli_args, tmp_path) -> dict[str, Any]:
    """A graph holding a small valid SYNTHETIC export (JSON Lines bookmarks, imported by
    ``lesionkg etl``, and DeepLesion rows, loaded by ``lesionkg load``), and its hash."""
    export = tmp_path / "export"
    write_synthetic_bookmarks(export, patients=3, seed=0)
    etl_args = [
        "--secret",
        str(tmp_path / "pseudonym.key"),
        "--index-dir",
        str(tmp_path / "index"),
        "--allow-missing-images",
        "--quiet",
    ]
    runner = CliRunner()
    imported = runner.invoke(main, [*cli_args, "etl", str(export), *etl_args])
    assert imported.exit_code == 0, imported.output
    cohort = write_synthetic_dl_info(
        tmp_path / "cohort", patients=3, seed=1, first_patient_index=50
    )
    loaded = runner.invoke(main, [*cli_args, "load", "deeplesion", str(cohort.csv_path), "--quiet"])
    assert loaded.exit_code == 0, loaded.output
    digest, nodes, rels = graph_hash(empty_graph)
    assert nodes > 10 and rels > 10
    return {"hash": (digest, nodes, rels), "etl_args": etl_args}


def refused(result: Result, rule: str, *texts: str) -> None:
    """``result`` is click's ``Error: ...`` exit 1 naming ``rule`` and ``texts``, no traceback."""
    output = result.output
    assert result.exit_code == 1, output
    # CliRunner turns an uncaught exception into exit code 1 as well: it must be click's exit.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    assert "Error: " in output
    assert f"(rule {rule})" in output, output
    for text in texts:
        assert text in output, (text, output)


def within(seconds: float, run: Callable[[], Result]) -> Result:
    """``run()`` in a thread; fail (not hang) when it takes longer than ``seconds``."""
    outcome: list[Result] = []
    thread = threading.Thread(target=lambda: outcome.append(run()), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still running after {seconds} s (blocked on a FIFO?)")
    return outcome[0]


# --- the corpus (generators as in tests/loaders/test_hostile_input.py) --------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A 16-bit grey PNG whose header claims ``width`` x ``height`` with one row of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 2 * width))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def write_slice(path: Path, size: int = 512, seed: int = 0) -> Path:
    """A SYNTHETIC 16-bit key slice with noise (so that its image data is not tiny)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(31000, 34000, (size, size), dtype=np.uint16)).save(path)
    return path


def bookmark(**changes: Any) -> dict[str, Any]:
    """A valid SYNTHETIC bookmark of a patient the baseline does not hold."""
    obj: dict[str, Any] = {
        "patient": "PX-1",
        "study": "ST-1",
        "study_time": "2024-03-01T10:22:00",
        "image": "img/k.png",
        "long_axis_px": [100, 200, 130, 240],
        "spacing_mm": [0.8, 0.8],
    }
    obj.update(changes)
    return obj


def bookmarks_file(folder: Path, *lines: dict[str, Any] | str) -> Path:
    """A JSON Lines file of ``lines`` with a valid SYNTHETIC key slice at ``img/k.png``."""
    folder.mkdir(parents=True)
    write_slice(folder / "img" / "k.png")
    path = folder / "b.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def truncated_png(path: Path) -> None:
    """A valid 512 x 512 slice cut short: its header stays whole, its image data does not."""
    write_slice(path, seed=1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def json_nested(folder: Path) -> Path:
    deep = "[" * 3000 + "]" * 3000
    return bookmarks_file(folder, bookmark(), json.dumps(bookmark()).replace('"PX-1"', deep))


def png_bomb(folder: Path) -> Path:
    path = bookmarks_file(folder, bookmark(image="img/huge.png"))
    (folder / "img" / "huge.png").write_bytes(png_claiming(15000, 15000))
    return path


def png_truncated(folder: Path) -> Path:
    # Line 1 is valid: the whole file must be refused, not line 2 alone.
    path = bookmarks_file(
        folder, bookmark(), bookmark(patient="PX-2", study="ST-2", image="img/cut.png")
    )
    truncated_png(folder / "img" / "cut.png")
    return path


def coordinates_outside(folder: Path) -> Path:
    return bookmarks_file(folder, bookmark(), bookmark(long_axis_px=[100, 200, 9254, 240]))


def spacing_huge(folder: Path) -> Path:
    return bookmarks_file(folder, bookmark(), bookmark(spacing_mm=[1e300, 1e300]))


def date_placeholder(folder: Path) -> Path:
    return bookmarks_file(folder, bookmark(), bookmark(study_time="0001-01-01T00:00:00"))


ETL_CORPUS: list[tuple[str, Callable[[Path], Path], str, str]] = [
    ("json nested 3,000 deep", json_nested, "json_depth", "line 2"),
    ("PNG claiming 15,000 x 15,000", png_bomb, "image_pixels", "15000"),
    ("truncated PNG behind a valid header", png_truncated, "image_truncated", "cut.png"),
    ("coordinates outside the image", coordinates_outside, "outside_image", "9254"),
    ("spacing 1e300 mm", spacing_huge, "spacing_range", "1e+300"),
    ("study_time 0001-01-01", date_placeholder, "date_range", "0001-01-01"),
]


def dl_rows(folder: Path) -> list[dict[str, str]]:
    """40 valid SYNTHETIC DeepLesion rows of patients the baseline does not hold."""
    cohort = write_synthetic_dl_info(folder, patients=20, seed=2, first_patient_index=500)
    with open(cohort.csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 40
    return rows[:40]


def write_dl_info(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def with_row(rows: list[dict[str, str]], at: int, **cells: str) -> list[dict[str, str]]:
    changed = [dict(r) for r in rows]
    changed[at].update(cells)
    return changed


def huge_index(rows):
    return with_row(rows, 37, Patient_index="1" + "0" * 22)


def dl_outside(rows):
    return with_row(rows, 37, Measurement_coordinates="100, 200, 9254, 240, 120, 210, 130, 230")


def dl_spacing(rows):
    return with_row(rows, 37, Spacing_mm_px_="1e300, 1e300, 5")


LOAD_CORPUS: list[tuple[str, Callable[[list[dict[str, str]]], list[dict[str, str]]], str, str]] = [
    ("a 23-digit index", huge_index, "integer_range", "Patient_index"),
    ("coordinates outside the image", dl_outside, "outside_image", "9254"),
    ("spacing 1e300 mm", dl_spacing, "spacing_range", "1e+300"),
]


# --- the tests ---------------------------------------------------------------------------------


def test_hostile_bookmarks_leave_the_graph_unchanged(baseline, empty_graph, cli_args, tmp_path):
    runner = CliRunner()
    for name, make, rule, text in ETL_CORPUS:
        path = make(tmp_path / rule)
        result = within(
            120,
            lambda p=path: runner.invoke(main, [*cli_args, "etl", str(p), *baseline["etl_args"]]),
        )
        refused(result, rule, str(path), text)
        assert graph_hash(empty_graph) == baseline["hash"], name


def test_hostile_deeplesion_rows_leave_the_graph_unchanged(
    baseline, empty_graph, cli_args, tmp_path
):
    runner = CliRunner()
    rows = dl_rows(tmp_path / "cohort-500")
    for name, change, rule, text in LOAD_CORPUS:
        path = write_dl_info(tmp_path / f"{rule}.csv", change(rows))
        # Row 38 of 40 (line 39) is bad; with batches of 5, 7 batches would be written first.
        for command in (
            ["load", "deeplesion", str(path), "--batch-size", "5", "--quiet"],
            ["etl", str(path), *baseline["etl_args"]],
        ):
            result = runner.invoke(main, [*cli_args, *command])
            refused(result, rule, str(path), "line 39", text)
            assert graph_hash(empty_graph) == baseline["hash"], (name, command[0])


def test_a_fifo_named_csv_is_refused_without_hanging(baseline, empty_graph, cli_args, tmp_path):
    fifo = tmp_path / "DL_info.csv"
    os.mkfifo(fifo)
    runner = CliRunner()
    for command in (
        ["load", "deeplesion", str(fifo), "--quiet"],
        ["etl", str(fifo), *baseline["etl_args"]],
    ):
        result = within(60, lambda c=command: runner.invoke(main, [*cli_args, *c]))
        refused(result, "not_regular_file", str(fifo), "FIFO")
        assert graph_hash(empty_graph) == baseline["hash"], command[0]


def test_rejects_file_naming_the_input_is_refused_before_loading(
    baseline, empty_graph, cli_args, tmp_path
):
    rows = dl_rows(tmp_path / "cohort-500")
    path = write_dl_info(tmp_path / "DL_info.csv", huge_index(rows))
    before = path.read_bytes()
    os.link(path, tmp_path / "other-name.csv")
    for rejects in (str(path), str(tmp_path / "other-name.csv")):
        result = CliRunner().invoke(
            main,
            [*cli_args, "load", "deeplesion", str(path), "--skip-invalid", "--rejects", rejects],
        )
        refused(result, "output_is_input", "--rejects")
        assert path.read_bytes() == before
        assert graph_hash(empty_graph) == baseline["hash"]


def test_limits_from_the_command_line_reach_the_readers(baseline, empty_graph, cli_args, tmp_path):
    """A valid file refused under a tightened ``--limit``: the setting reaches the readers."""
    runner = CliRunner()
    path = bookmarks_file(tmp_path / "ok", bookmark())
    result = runner.invoke(
        main,
        [*cli_args, "etl", str(path), *baseline["etl_args"], "--limit", "earliest_date=2025-01-01"],
    )
    refused(result, "date_range", "2024-03-01")
    rows = dl_rows(tmp_path / "cohort-500")
    csv_path = write_dl_info(tmp_path / "DL_info.csv", rows[:5])
    result = runner.invoke(
        main,
        [
            *cli_args,
            "load",
            "deeplesion",
            str(csv_path),
            "--quiet",
            "--limit",
            "spacing_max_mm=0.1",
        ],
    )
    refused(result, "spacing_range", "0.1")
    assert graph_hash(empty_graph) == baseline["hash"]
