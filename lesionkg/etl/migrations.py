"""What an import fixes once in graphs imported by earlier versions: study dates in clear, and
location sources that contradict the lesion's image status.

Study dates in the graph are shifted per patient; graphs imported before are migrated.

Study dates and times identify a patient (HIPAA Safe Harbor, DICOM PS3.15's de-identification
profile). Every PACS bookmark's study date is shifted by its patient's offset when it is
pseudonymised (:meth:`lesionkg.core.pseudonym.Pseudonymizer.date_shift_days`: whole days earlier,
from the key and the pseudonymous patient id). A graph imported before that holds dates in clear;
:func:`migrate_study_dates` shifts them in ONE transaction and marks the graph's key node
(``PseudonymKey.dates_shifted``), so it runs once: an import calls it before its first write, and
running it again changes nothing.

Earlier imports wrote ``location_source = 'none: no image'`` also for a lesion whose image was
found but whose measurement had no coordinates on it (an ellipse, a bare NUM):
:func:`fix_location_sources` rewrites exactly those to the source they have now
(:mod:`lesionkg.core.provenance`), once per graph (``PseudonymKey.location_sources_fixed``).
"""

from __future__ import annotations

import logging

from lesionkg.core import provenance
from lesionkg.core.pseudonym import Pseudonymizer, shift_datetime
from lesionkg.db.driver import Driver, Tx, run_in, write_transaction

__all__ = ["fix_location_sources", "migrate_study_dates"]

log = logging.getLogger(__name__)


def migrate_study_dates(driver: Driver, database: str, pseudonymizer: Pseudonymizer) -> int:
    """Shift the stored study dates of pseudonymised patients once; how many studies moved.

    0 when the graph's dates are already shifted (the marker is set) or it holds none. The caller
    has checked that the graph's key is ``pseudonymizer``'s (a graph without a key node gets one
    with this key and the marker: nothing in it needs shifting).
    """

    def work(tx: Tx) -> int:
        state = run_in(tx, "etl/migrate_dates_begin", key_id=pseudonymizer.key_id)
        if state[0]["shifted"] or state[0]["key_id"] != pseudonymizer.key_id:
            # Done already; or another key's graph (a race with a first import under another
            # key, which the import then refuses): its offsets are not this key's to compute.
            return 0
        studies = run_in(tx, "etl/migrate_dates_studies")
        days: dict[str, int] = {}
        rows = []
        for r in studies:
            pid = r["patient_id"]
            if pid not in days:
                days[pid] = pseudonymizer.date_shift_days(pid)
            rows.append(
                {
                    "study_id": r["study_id"],
                    "study_datetime": shift_datetime(r["study_datetime"], days[pid]),
                }
            )
        written = run_in(tx, "etl/migrate_dates_write", rows=rows)
        return int(written[0]["shifted"])

    moved = write_transaction(driver, database, work, "shifting the stored study dates")
    if moved:
        log.info("shifted the study dates of %d studies by their patients' offsets", moved)
    return moved


def fix_location_sources(driver: Driver, database: str) -> int:
    """Give the lesions whose image was found but whose location source says "no image" the
    source they would get now; how many changed. Once per graph: the graph's key node is marked,
    and later calls change nothing and read no lesion (call after :func:`migrate_study_dates`,
    which makes that node)."""

    def work(tx: Tx) -> int:
        rows = run_in(
            tx,
            "etl/fix_location_sources",
            legacy=provenance.LEGACY_NO_IMAGE,
            found=provenance.ImageStatus.FOUND.value,
            source=provenance.NO_COORDINATES,
        )
        return int(rows[0]["fixed"])

    fixed = write_transaction(driver, database, work, "fixing contradicting location sources")
    if fixed:
        log.info("%d lesions with a found image said 'no image' as location source; fixed", fixed)
    return fixed
