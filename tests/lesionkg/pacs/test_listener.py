"""The C-STORE listener, pushed to by pynetdicom's SCU over real TCP, importing into Neo4j."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pydicom
import pytest
from conftest import DATABASE
from pydicom.uid import MRImageStorage, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    ComprehensiveSRStorage,
    CTImageStorage,
    Verification,
)

from lesionkg.db.server import free_port
from lesionkg.etl.options import EtlOptions
from lesionkg.pacs.cohort import write_pacs_cohort
from lesionkg.pacs.listener import REFUSED_SOP_CLASS, StorageListener, listen
from lesionkg.synthetic.dicom import write_synthetic_ct

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


def _scu(port: int, *, max_pdu: int = 0, handlers=None):
    ae = AE(ae_title="TEST-SCU")
    for uid in (CTImageStorage, COMPREHENSIVE_3D_SR, ComprehensiveSRStorage, MRImageStorage):
        ae.add_requested_context(uid)
    ae.add_requested_context(Verification)
    assoc = ae.associate(
        "127.0.0.1", port, ae_title="LESIONKG", max_pdu=max_pdu, evt_handlers=handlers or []
    )
    assert assoc.is_established
    return assoc


def _published(inbox: Path, n: int, timeout_s: float = 10.0) -> list[Path]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        entries = sorted(p for p in inbox.iterdir() if not p.name.startswith("."))
        if len(entries) >= n:
            return entries
        time.sleep(0.05)
    raise AssertionError(f"{n} entries expected in {inbox}, got {list(inbox.iterdir())}")


def test_stores_ct_and_sr_refuses_others_and_survives_a_dropped_sender(tmp_path):
    studies = write_pacs_cohort(tmp_path / "cohort", patients=1, studies=1, lesions=1)
    study = studies[0]
    assert study.report is not None
    inbox = tmp_path / "inbox"
    port = free_port()
    with StorageListener(inbox, port=port, host="127.0.0.1") as listener:
        assoc = _scu(port)
        assert assoc.send_c_echo().Status == 0x0000
        for path in [*study.ct, study.report]:
            assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0x0000
        mr = pydicom.dcmread(study.ct[0])
        mr.SOPClassUID = MRImageStorage
        mr.file_meta.MediaStorageSOPClassUID = MRImageStorage
        mr.SOPInstanceUID = mr.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        assert assoc.send_c_store(mr).Status == REFUSED_SOP_CLASS
        assoc.release()
        (entry,) = _published(inbox, 1)
        files = sorted(entry.iterdir())
        assert len(files) == len(study.ct) + 1
        # written as sent: the same bytes pydicom reads back, the same instance
        got = {pydicom.dcmread(f).SOPInstanceUID for f in files}
        assert got == {pydicom.dcmread(p).SOPInstanceUID for p in [*study.ct, study.report]}

        # A sender that drops the TCP connection in the middle of a large instance.
        big = tmp_path / "big.dcm"
        write_synthetic_ct(
            big,
            study_uid=generate_uid(),
            study_date="20210101",
            study_time="1000",
            rows=512,
            columns=512,
        )
        sent = {"pdus": 0}

        def drop_after_a_few_pdus(event) -> None:
            sent["pdus"] += 1
            if sent["pdus"] == 6:
                event.assoc.dul.socket.socket.close()

        dropped = _scu(port, max_pdu=16384, handlers=[(evt.EVT_PDU_SENT, drop_after_a_few_pdus)])
        assert dropped.send_c_store(pydicom.dcmread(study.ct[0])).Status == 0x0000
        with contextlib.suppress(Exception):  # the sender side breaks: that is the point
            dropped.send_c_store(pydicom.dcmread(big))
        dropped.abort()
        entries = _published(inbox, 2)
        # what was acknowledged is kept; the instance in flight was never written
        assert [len(list(e.iterdir())) for e in entries] == [len(files), 1]
        assert not list(inbox.glob(".*"))
        # and the listener goes on
        again = _scu(port)
        assert again.send_c_echo().Status == 0x0000
        again.release()
        assert listener.counts.refused == 1


@pytest.mark.neo4j
def test_a_pushed_study_reaches_the_graph(empty_graph, tmp_path):
    studies = write_pacs_cohort(tmp_path / "cohort", patients=1, studies=2, lesions=2)
    inbox = tmp_path / "inbox"
    port = free_port()
    stop = threading.Event()
    options = EtlOptions(secret_path=tmp_path / "key", index_dir=tmp_path / "index")
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(
            summary=listen(
                empty_graph,
                inbox,
                port=port,
                host="127.0.0.1",
                database=DATABASE,
                options=options,
                poll_s=0.2,
                stop=stop,
            )
        )
    )
    thread.start()
    try:
        for study in studies:
            # baseline and follow-up in separate associations, CT before the report
            deadline = time.monotonic() + 10
            while True:
                try:
                    assoc = _scu(port)
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            for path in [*study.ct, study.report]:
                assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0x0000
            assoc.release()
        deadline = time.monotonic() + 60
        edges = 0
        while time.monotonic() < deadline:
            records, _, _ = empty_graph.execute_query(
                "MATCH (a:Lesion)-[:FOLLOWED_BY]->(b:Lesion) RETURN count(*) AS n",
                database_=DATABASE,
            )
            edges = records[0]["n"]
            if edges == 2:
                break
            time.sleep(0.2)
        assert edges == 2
    finally:
        stop.set()
        thread.join(30)
    summary = result["summary"]
    assert (summary.accepted, summary.rejected) == (4, 0)
    assert len(list((inbox / "done").iterdir())) == 2
    records, _, _ = empty_graph.execute_query(
        "MATCH (l:Lesion) RETURN l.long_axis_mm AS mm ORDER BY mm", database_=DATABASE
    )
    expected = sorted(v for s in studies for v in s.lesions.values())
    assert [r["mm"] for r in records] == pytest.approx(expected)
