"""``lesionkg etl --watch``: entries dropped in a real inbox folder end in done/ or quarantine/,
and their bookmarks in the real Neo4j."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from lesionkg.core.errors import ConfigurationError
from lesionkg.etl.importer import EtlOptions
from lesionkg.etl.inbox import DONE, QUARANTINE, watch_inbox
from lesionkg.synthetic.dicom import (
    LONG_AXIS,
    MM,
    group,
    measurement,
    write_report,
    write_synthetic_ct,
)

pytestmark = pytest.mark.neo4j
DATABASE = "neo4j"


def bookmark_line(patient: str, study: str, time_iso: str, x: float) -> str:
    return json.dumps(
        {
            "patient": patient,
            "study": study,
            "study_time": time_iso,
            "image": "not_exported.png",
            "long_axis_px": [x, 100, x + 30, 120],
            "spacing_mm": [0.8, 0.8],
            "location": [x / 512, 0.5, 0.5],
            "window_hu": [-175, 275],
        }
    )


def write_study_export(folder: Path) -> Path:
    """A SYNTHETIC study export folder: one CT slice and its measurement report."""
    folder.mkdir()
    ct = write_synthetic_ct(
        folder / "ct.dcm",
        study_uid=generate_uid(),
        study_date="20240405",
        study_time="080000",
        body=True,
    )
    write_report(
        folder / "sr.dcm",
        ct,
        [group([measurement(LONG_AXIS, 14.0, MM, ct, [[20, 20], [36, 30]])], generate_uid())],
    )
    return folder


def run_watch(inbox: Path, options: EtlOptions, driver, entries: int) -> tuple:
    results = []
    summary = watch_inbox(
        driver,
        inbox,
        database=DATABASE,
        options=options,
        poll_s=0.05,
        max_entries=entries,
        on_entry=results.append,
    )
    return summary, results


def test_entries_go_to_done_or_quarantine(empty_graph, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "good.jsonl").write_text(
        bookmark_line("SYNTHETIC-W-1", "a", "2024-01-02", 100.0)
        + "\n"
        + bookmark_line("SYNTHETIC-W-1", "b", "2024-03-02", 102.0)
        + "\n"
    )
    (inbox / "bad.jsonl").write_text('{"patient": "SYNTHETIC-W-2"}\n')
    write_study_export(inbox / "study_export")
    (inbox / "copying.jsonl.part").write_text("half a file")
    options = EtlOptions(
        allow_missing_images=True, secret_path=tmp_path / "k", index_dir=tmp_path / "i"
    )
    summary, results = run_watch(inbox, options, empty_graph, entries=3)
    where = {r.name: r.destination for r in results}
    assert where == {"good.jsonl": DONE, "bad.jsonl": QUARANTINE, "study_export": DONE}
    assert (inbox / DONE / "good.jsonl").is_file()
    assert (inbox / DONE / "study_export" / "sr.dcm").is_file()
    assert (inbox / QUARANTINE / "bad.jsonl").is_file()
    reason = json.loads((inbox / QUARANTINE / "bad.jsonl.reason.json").read_text())
    assert reason["entry"] == "bad.jsonl"
    (bad,) = reason["files"]
    fields = {p["field"] for p in bad["problems"]}
    assert {"study", "study_time", "image", "long_axis_px", "spacing_mm"} <= fields
    assert all(p["line"] == 1 for p in bad["problems"])
    # A file still being copied (a .part name) is left alone.
    assert (inbox / "copying.jsonl.part").is_file()
    assert summary.accepted == 3 and summary.rejected_files == 1
    records, _, _ = empty_graph.execute_query(
        "MATCH (l:Lesion) RETURN count(l) AS n, count(l.track_id) AS tracked", database_=DATABASE
    )
    assert (records[0]["n"], records[0]["tracked"]) == (3, 3)


def test_an_entry_dropped_again_is_a_duplicate(empty_graph, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    line = bookmark_line("SYNTHETIC-W-3", "a", "2024-01-02", 80.0) + "\n"
    (inbox / "one.jsonl").write_text(line)
    options = EtlOptions(
        allow_missing_images=True, secret_path=tmp_path / "k", index_dir=tmp_path / "i"
    )
    run_watch(inbox, options, empty_graph, entries=1)
    (inbox / "one.jsonl").write_text(line)
    summary, results = run_watch(inbox, options, empty_graph, entries=1)
    assert (summary.accepted, summary.duplicates) == (0, 1)
    assert results[0].destination == DONE
    # The line the CLI shows for it (on standard error) says where it went and what it gave.
    assert re.fullmatch(
        r"done: one\.jsonl 0 new, 1 duplicates \(\d+\.\d\d s\)", results[0].describe()
    )
    # The second copy does not overwrite the first in done/.
    assert len(list((inbox / DONE).glob("one.jsonl*"))) == 2


def test_one_watcher_per_inbox(empty_graph, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    options = EtlOptions(secret_path=tmp_path / "k", index_dir=tmp_path / "i")
    stop = threading.Event()
    first = threading.Thread(
        target=watch_inbox,
        args=(empty_graph, inbox),
        kwargs={"options": options, "poll_s": 0.05, "stop": stop},
    )
    first.start()
    try:
        deadline = time.monotonic() + 30
        while not (inbox / DONE).is_dir() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        with pytest.raises(ConfigurationError, match="already serves"):
            watch_inbox(empty_graph, inbox, options=options, max_entries=1)
    finally:
        stop.set()
        first.join(timeout=30)
    assert not first.is_alive()
