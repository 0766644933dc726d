"""The DICOMweb pull sync against a real Orthanc and a real Neo4j (no mocks)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from conftest import DATABASE

from lesionkg.config.secret import load_or_create_secret
from lesionkg.core.pseudonym import Pseudonymizer
from lesionkg.db.schema import apply_schema, reset
from lesionkg.etl.importer import run_etl
from lesionkg.etl.options import EtlOptions
from lesionkg.pacs import orthanc
from lesionkg.pacs.client import PacsClient, PacsConnection, PacsRetry
from lesionkg.pacs.cohort import StudyFiles, write_pacs_cohort
from lesionkg.pacs.dicomweb import SyncOptions, sync_dicomweb
from lesionkg.pacs.errors import PacsAuthError, PacsError
from lesionkg.pacs.ledger import Ledger

pytestmark = pytest.mark.neo4j


def _options(tmp_path: Path) -> EtlOptions:
    return EtlOptions(secret_path=tmp_path / "key", index_dir=tmp_path / "index")


def _sync_options(tmp_path: Path, **kw) -> SyncOptions:
    return SyncOptions(state_dir=tmp_path / "state", **kw)


def _files(studies: list[StudyFiles], index: int | None = None) -> list[Path]:
    return [
        p
        for s in studies
        if index is None or s.index == index
        for p in [*s.ct, s.report]
        if p is not None
    ]


def _graph(driver) -> dict:
    """What a sync leaves in the graph: lesions with their lengths, tracks, and the edges."""
    lesions, _, _ = driver.execute_query(
        "MATCH (p:Patient)-[:HAS_STUDY]->(:Study)-[:HAS_LESION]->(l:Lesion) "
        "RETURN l.lesion_id AS id, p.patient_id AS patient, l.long_axis_mm AS mm, "
        "l.track_id AS track ORDER BY id",
        database_=DATABASE,
    )
    edges, _, _ = driver.execute_query(
        "MATCH (a:Lesion)-[:FOLLOWED_BY]->(b:Lesion) RETURN a.lesion_id AS a, b.lesion_id AS b "
        "ORDER BY a, b",
        database_=DATABASE,
    )
    return {
        "lesions": [dict(r) for r in lesions],
        "followed_by": [(r["a"], r["b"]) for r in edges],
    }


def test_sync_imports_usable_reports_then_only_the_follow_up(
    empty_graph, pacs, pacs_connection, store_in_pacs, dicom_dir, tmp_path
):
    # The file ETL's verdict on the real report with diameters in mm, read from disk with its CT.
    oracle = run_etl(
        empty_graph,
        [dicom_dir / "sr" / "sr_document_with_multiple_groups.dcm", dicom_dir / "ct"],
        options=_options(tmp_path / "oracle"),
        progress=False,
    )
    assert oracle.accepted >= 1
    reset(empty_graph, DATABASE)
    apply_schema(empty_graph, DATABASE)

    studies = write_pacs_cohort(tmp_path / "cohort", patients=3, studies=2, lesions=2)
    store_in_pacs([*dicom_dir.rglob("*.dcm"), *_files(studies, 0)])
    options, sync = _options(tmp_path), _sync_options(tmp_path)
    first = sync_dicomweb(empty_graph, pacs_connection, options=options, sync=sync)
    # 3 synthetic baselines + 5 real SRs of the three measurement-report SOP classes (the sixth
    # is filed in its CT's series, whose modality is CT: see below).
    assert first.found == 8 and first.retrieved == 8
    # Usable: the 3 synthetic reports (2 lesions each) and the real report with diameters in mm,
    # with as many bookmarks as the file ETL gives it.
    assert (first.imported, first.bookmarks) == (4, 6 + oracle.accepted)
    # Not usable: the volumetric liver report, the non-TID 1500 SR.
    assert first.quarantined == 2
    # Waiting for CT images the PACS does not have: the two dcmjs reports.
    assert first.pending == 2
    quarantine = tmp_path / "state" / "quarantine"
    reasons = [json.loads(p.read_text()) for p in quarantine.glob("*.reason.json")]
    rejected = [r for r in reasons if r["reason"] == "the reader rejected the report"]
    assert len(rejected) == 2
    assert all((quarantine / r["file"]).is_file() and r["problems"] for r in rejected)

    pseudo = Pseudonymizer(load_or_create_secret(tmp_path / "key"))
    graph = _graph(empty_graph)
    for study in studies:
        if study.index:
            continue
        mine = [x for x in graph["lesions"] if x["patient"] == pseudo.patient_id(study.patient_id)]
        assert sorted(x["mm"] for x in mine) == pytest.approx(sorted(study.lesions.values()))

    # The follow-ups arrive: the next sync retrieves exactly them, each with its one key slice.
    # The two pending reports are not retrieved again: a QIDO search per missing CT image says
    # it is still missing.
    store_in_pacs(_files(studies, 1))
    client = PacsClient(pacs_connection)
    second = sync_dicomweb(empty_graph, pacs_connection, options=options, sync=sync, client=client)
    assert second.found == 11 and second.known == 6 and second.retrieved == 3
    assert (second.imported, second.pending, second.quarantined) == (3, 2, 0)
    requests = client.counter.snapshot()
    assert requests["wado"] == 3 + 3
    # 1 search + one per missing CT image of the pending reports (3)
    assert requests["qido"] == 1 + 3
    graph = _graph(empty_graph)
    for study in studies:
        mine = [x for x in graph["lesions"] if x["patient"] == pseudo.patient_id(study.patient_id)]
        assert len(mine) == 4
        # each lesion measured at baseline and follow-up is one track
        assert len({x["track"] for x in mine}) == 2
    assert len(graph["followed_by"]) == 3 * 2

    # Nothing new: a sync retrieves nothing.
    third = sync_dicomweb(empty_graph, pacs_connection, options=options, sync=sync)
    assert (third.retrieved, third.imported, third.pending) == (0, 0, 2)
    # no identifier of the PACS reaches the graph
    text = json.dumps(_graph(empty_graph))
    assert "SYNTHETIC-PACS" not in text and studies[0].study_uid not in text
    counts = Ledger(empty_graph, pacs_connection.source, DATABASE).counts()
    assert counts == {"imported": 7, "quarantined": 2, "pending": 2}
    # A search by SOP class also finds the SR filed in a CT series (an area only: quarantined).
    by_class = sync_dicomweb(
        empty_graph,
        pacs_connection,
        options=options,
        sync=_sync_options(tmp_path, by_sop_class=True),
    )
    assert (by_class.found, by_class.retrieved, by_class.quarantined) == (12, 1, 1)


def test_report_before_its_ct_is_pending_then_imported(
    empty_graph, pacs_connection, store_in_pacs, tmp_path
):
    studies = write_pacs_cohort(tmp_path / "cohort", patients=2, studies=1, lesions=1)
    early, late = studies
    assert early.report is not None and late.report is not None
    store_in_pacs([early.report, late.report])
    options = _options(tmp_path)
    first = sync_dicomweb(
        empty_graph, pacs_connection, options=options, sync=_sync_options(tmp_path)
    )
    assert (first.pending, first.imported) == (2, 0)
    assert all("not in the PACS yet" in r for r in first.pending_reasons)
    assert _graph(empty_graph)["lesions"] == []
    # The first CT arrives; the second never does and its report ages out into quarantine.
    store_in_pacs(early.ct)
    second = sync_dicomweb(
        empty_graph,
        pacs_connection,
        options=options,
        sync=_sync_options(tmp_path, pending_max_age_s=0.0),
    )
    assert (second.imported, second.pending, second.quarantined) == (1, 0, 1)
    assert len(_graph(empty_graph)["lesions"]) == 1
    reasons = list((tmp_path / "state" / "quarantine").glob("*.reason.json"))
    assert len(reasons) == 1
    assert "not in the PACS yet after" in json.loads(reasons[0].read_text())["reason"]


def test_wrong_credentials_fail_once_without_retries(empty_graph, pacs, tmp_path):
    wrong = PacsConnection(pacs.dicomweb_url, pacs.username, "not-the-password")
    client = PacsClient(wrong, PacsRetry(give_up_after_s=30))
    started = time.monotonic()
    with pytest.raises(PacsAuthError, match="refused the credentials"):
        sync_dicomweb(
            empty_graph,
            wrong,
            options=_options(tmp_path),
            sync=_sync_options(tmp_path),
            client=client,
        )
    assert client.counter.snapshot() == {"qido": 1}
    assert time.monotonic() - started < 5


def test_unreachable_pacs_gives_a_clear_error(empty_graph, tmp_path):
    from lesionkg.db.server import free_port

    nowhere = PacsConnection(f"http://127.0.0.1:{free_port()}/dicom-web")
    with pytest.raises(PacsError, match="unreachable"):
        sync_dicomweb(
            empty_graph,
            nowhere,
            options=_options(tmp_path),
            sync=_sync_options(tmp_path, retry=PacsRetry(0.1, 0.2, 1.0)),
        )


def test_orthanc_stopped_mid_sync_converges(
    empty_graph, pacs, pacs_connection, store_in_pacs, tmp_path
):
    studies = write_pacs_cohort(tmp_path / "cohort", patients=4, studies=2, lesions=2)
    store_in_pacs(_files(studies))
    # An undisturbed run gives the reference graph.
    reference_dir = tmp_path / "reference"
    sync_dicomweb(
        empty_graph,
        pacs_connection,
        options=_options(reference_dir),
        sync=_sync_options(reference_dir, page_size=2),
    )
    reference = _graph(empty_graph)
    assert len(reference["lesions"]) == 16

    reset(empty_graph, DATABASE)
    apply_schema(empty_graph, DATABASE)
    # Same key (same ids), fresh index and state. Orthanc goes down after the first batch.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "key").write_bytes((reference_dir / "key").read_bytes())
    (run_dir / "key").chmod(0o600)
    client = PacsClient(pacs_connection, PacsRetry(0.1, 0.2, 1.5))

    def stop_after_first_batch() -> None:
        while client.counter.snapshot().get("wado", 0) < 4:
            time.sleep(0.005)
        orthanc.stop(pacs.data_dir)

    killer = threading.Thread(target=stop_after_first_batch)
    killer.start()
    with pytest.raises(PacsError, match="unreachable"):
        sync_dicomweb(
            empty_graph,
            pacs_connection,
            options=_options(run_dir),
            sync=_sync_options(run_dir, page_size=2),
            client=client,
        )
    killer.join()
    partial = _graph(empty_graph)
    # whole reports only: each has its 2 lesions, none half-written
    assert len(partial["lesions"]) % 2 == 0 and len(partial["lesions"]) < 16
    orthanc.start(pacs.data_dir)

    # Restarted while a sync is retrying: that sync rides it out.
    resumed_client = PacsClient(pacs_connection, PacsRetry(0.2, 1.0, 60))
    orthanc.stop(pacs.data_dir)
    restarter = threading.Timer(1.0, lambda: orthanc.start(pacs.data_dir))
    restarter.start()
    resumed = sync_dicomweb(
        empty_graph,
        pacs_connection,
        options=_options(run_dir),
        sync=_sync_options(run_dir, page_size=2),
        client=resumed_client,
    )
    restarter.join()
    assert resumed.retries >= 1
    assert resumed.known == len(partial["lesions"]) // 2
    assert _graph(empty_graph) == reference


def test_embedding_retrieves_only_the_adjacent_slices(
    empty_graph, pacs_connection, store_in_pacs, tmp_path
):
    studies = write_pacs_cohort(tmp_path / "cohort", patients=1, studies=1, lesions=2, slices=7)
    store_in_pacs(_files(studies))
    client = PacsClient(pacs_connection)
    summary = sync_dicomweb(
        empty_graph,
        pacs_connection,
        options=_options(tmp_path),
        sync=_sync_options(tmp_path, neighbours=True),
        client=client,
    )
    assert summary.imported == 1
    # the report, its key slice and the two slices around it; never the 4 other slices
    assert client.counter.snapshot() == {"qido": 1 + 1, "wado": 1 + 3}


def test_watch_imports_what_arrives(empty_graph, pacs_connection, store_in_pacs, tmp_path):
    from lesionkg.pacs.dicomweb import watch_dicomweb

    studies = write_pacs_cohort(tmp_path / "cohort", patients=1, studies=2, lesions=1)
    stop = threading.Event()
    syncs: list = []
    thread = threading.Thread(
        target=lambda: syncs.extend(
            watch_dicomweb(
                empty_graph,
                pacs_connection,
                database=DATABASE,
                options=_options(tmp_path),
                sync=_sync_options(tmp_path),
                poll_s=0.2,
                stop=stop,
            )
        )
    )
    thread.start()
    try:
        for study in studies:
            store_in_pacs(_files([study]))
            deadline = time.monotonic() + 30
            while len(_graph(empty_graph)["lesions"]) < study.index + 1:
                assert time.monotonic() < deadline, "not imported within 30 s"
                time.sleep(0.1)
    finally:
        stop.set()
        thread.join(30)
    assert len(_graph(empty_graph)["followed_by"]) == 1
    assert sum(s.imported for s in syncs) == 2


def test_a_report_arriving_after_newer_studies_is_still_found(
    empty_graph, pacs_connection, store_in_pacs, tmp_path
):
    older, newer = write_pacs_cohort(tmp_path / "cohort", patients=2, studies=1, lesions=1)
    assert (older.study_date, newer.study_date) == ("20210104", "20210105")
    options, sync = _options(tmp_path), _sync_options(tmp_path)
    store_in_pacs(_files([newer]))
    first = sync_dicomweb(empty_graph, pacs_connection, options=options, sync=sync)
    assert (first.imported, first.cursor_after) == (1, "20201229")  # 7 days before 20210105
    store_in_pacs(_files([older]))
    second = sync_dicomweb(empty_graph, pacs_connection, options=options, sync=sync)
    assert (second.found, second.known, second.imported) == (2, 1, 1)
