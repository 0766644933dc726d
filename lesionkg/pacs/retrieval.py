"""WADO-RS retrieval of a batch of new reports and of exactly the CT instances they need.

For each report: the SR instance itself; then, per measurement, the CT instance its graphics are
drawn on (found in the report's content tree and located in its series through the report's
evidence sequences, else by a QIDO-RS search in its study); with ``neighbours`` (embedding needs
the slices just above and below the key slice) the series is listed once (QIDO-RS with the slice
positions) and only the two adjacent instances are retrieved. Whole studies or series are never
retrieved. Retrievals run in parallel, each CT at most once per batch.

A report whose referenced CT instance the PACS does not have (yet) is *waiting*: it is kept out of
the import, and the sync holds it as pending.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from lesionkg.loaders.ct import CT_SOP_CLASSES
from lesionkg.pacs.client import PacsClient

log = logging.getLogger(__name__)

#: the SR SOP classes of measurement reports (TID 1500) the sync looks for
SR_SOP_CLASSES: frozenset[str] = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
        "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
        "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    }
)
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
SOP_CLASS, STUDY_DATE = "00080016", "00080020"
POSITION, INSTANCE_NUMBER = "00200032", "00200013"


def tag_value(item: dict, tag: str) -> str | None:
    """The first value of ``tag`` in a DICOM JSON dataset (QIDO answer), as a string."""
    values = item.get(tag, {}).get("Value") or []
    return str(values[0]) if values else None


@dataclass(frozen=True, slots=True)
class Found:
    """One SR instance in a QIDO answer."""

    study: str
    series: str
    sop: str
    sop_class: str
    study_date: str | None
    key: str


@dataclass
class Fetched:
    """One retrieved report: where it was written and what it still waits for."""

    found: Found
    path: Path | None = None
    #: the report could not be read as DICOM (quarantined with this reason)
    unreadable: str | None = None
    #: referenced CT instances the PACS does not have (yet): SOP Instance UID -> (study, series;
    #: "" when unknown)
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    synthetic: bool = False


def _walk(items: Iterator[Dataset] | list[Dataset]) -> Iterator[Dataset]:
    for item in items:
        yield item
        if "ContentSequence" in item:
            yield from _walk(item.ContentSequence)


def referenced_ct(report: Dataset) -> dict[str, tuple[str, str] | None]:
    """CT instances the report's content references: SOP Instance UID -> (study, series) from the
    evidence sequences, or None when the evidence does not list it."""
    evidence: dict[str, tuple[str, str]] = {}
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in report.get(keyword, []) or []:
            for series in study.get("ReferencedSeriesSequence", []) or []:
                for sop in series.get("ReferencedSOPSequence", []) or []:
                    evidence[str(sop.ReferencedSOPInstanceUID)] = (
                        str(study.get("StudyInstanceUID", report.StudyInstanceUID)),
                        str(series.SeriesInstanceUID),
                    )
    refs: dict[str, tuple[str, str] | None] = {}
    for item in _walk(report.get("ContentSequence", []) or []):
        for ref in item.get("ReferencedSOPSequence", []) or []:
            if str(ref.get("ReferencedSOPClassUID", "")) in CT_SOP_CLASSES:
                uid = str(ref.ReferencedSOPInstanceUID)
                refs[uid] = evidence.get(uid)
    return refs


def is_measurement_report(report: Dataset) -> bool:
    """Whether the document is a TID 1500 Imaging Measurement Report (126000, DCM): only those
    wait for their CT; anything else goes straight to the reader, which rejects it."""
    names = report.get("ConceptNameCodeSequence") or []
    return bool(names) and (
        str(names[0].get("CodeValue", "")),
        str(names[0].get("CodingSchemeDesignator", "")),
    ) == ("126000", "DCM")


def is_synthetic(report: Dataset) -> bool:
    """Whether the report says it was generated (LesionKG's synthetic writers label it so)."""
    text = " ".join(str(report.get(k, "")) for k in ("Manufacturer", "PatientName"))
    return "SYNTHETIC" in text


class BatchRetrieval:
    """Retrieves one batch of reports and their CT instances into ``folder``."""

    def __init__(
        self, client: PacsClient, folder: Path, *, workers: int = 8, neighbours: bool = False
    ) -> None:
        self.client = client
        self.folder = folder
        self.workers = workers
        self.neighbours = neighbours
        self._ct_written: dict[str, Path | None] = {}
        self._series_listing: dict[tuple[str, str], list[dict]] = {}
        self._counter = 0

    def _name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter:06d}.dcm"

    def fetch(self, found: list[Found]) -> list[Fetched]:
        """Every report of ``found`` with the CT instances it references, written under
        ``folder/sr``, ``folder/synthetic`` and ``folder/ct``."""
        (self.folder / "ct").mkdir(parents=True, exist_ok=True)
        names = [self._name("sr") for _ in found]
        with ThreadPoolExecutor(self.workers) as pool:
            raw = list(
                pool.map(lambda f: self.client.retrieve_bytes(f.study, f.series, f.sop), found)
            )
        fetched: list[Fetched] = []
        wanted: dict[str, tuple[str, str] | None] = {}
        per_report: list[dict[str, tuple[str, str] | None]] = []
        for item, data, name in zip(found, raw, names, strict=True):
            result = Fetched(item)
            fetched.append(result)
            refs: dict[str, tuple[str, str] | None] = {}
            if data is None:
                result.unreadable = "the PACS no longer has the report (deleted after the search)"
                per_report.append(refs)
                continue
            try:
                report = pydicom.dcmread(BytesIO(data))
                result.synthetic = is_synthetic(report)
                refs = referenced_ct(report) if is_measurement_report(report) else {}
            except (InvalidDicomError, ValueError, TypeError, AttributeError, KeyError) as exc:
                result.unreadable = f"the report cannot be read as DICOM: {exc}"
            sub = self.folder / ("synthetic" if result.synthetic else "sr")
            sub.mkdir(exist_ok=True)
            result.path = sub / name
            result.path.write_bytes(data)
            per_report.append(refs)
            for uid, where in refs.items():
                if wanted.get(uid) is None:
                    wanted[uid] = where if where is not None else (item.study, "")
        self._fetch_ct(wanted)
        for result, refs in zip(fetched, per_report, strict=True):
            result.waiting = {
                uid: wanted[uid] or (result.found.study, "")
                for uid in refs
                if self._ct_written.get(uid) is None
            }
        if any(f.synthetic for f in fetched):
            (self.folder / "synthetic" / "SYNTHETIC.json").write_text(
                '{"synthetic": true, "note": "reports generated by LesionKG, from the PACS"}\n'
            )
        return fetched

    def _fetch_ct(self, wanted: dict[str, tuple[str, str] | None]) -> None:
        todo = {uid: where for uid, where in wanted.items() if uid not in self._ct_written}
        located = self._locate(todo)
        self._retrieve_ct(located)
        if self.neighbours:
            around: dict[str, tuple[str, str]] = {}
            for uid, (study, series) in located.items():
                if self._ct_written.get(uid) is None:
                    continue
                for other in self._adjacent(study, series, uid):
                    if other not in self._ct_written:
                        around[other] = (study, series)
            self._retrieve_ct(around)

    def _locate(self, todo: dict[str, tuple[str, str] | None]) -> dict[str, tuple[str, str]]:
        """(study, series) of each CT instance; a QIDO search where the evidence names none."""
        located: dict[str, tuple[str, str]] = {}
        for uid, where in todo.items():
            if where is not None and where[1]:
                located[uid] = where
                continue
            study = where[0] if where is not None else None
            hits = self.client.search_instances(study=study, filters={"SOPInstanceUID": uid})
            series = tag_value(hits[0], SERIES_UID) if hits else None
            if series is None or study is None:
                self._ct_written[uid] = None  # not in the PACS (yet)
            else:
                located[uid] = (study, series)
        return located

    def _retrieve_ct(self, located: dict[str, tuple[str, str]]) -> None:
        uids = list(located)

        def one(uid: str) -> tuple[str, bytes | None]:
            study, series = located[uid]
            return uid, self.client.retrieve_bytes(study, series, uid)

        with ThreadPoolExecutor(self.workers) as pool:
            results = list(pool.map(one, uids))
        for uid, data in results:
            if data is None:
                self._ct_written[uid] = None
                continue
            path = self.folder / "ct" / self._name("ct")
            path.write_bytes(data)
            self._ct_written[uid] = path

    def _adjacent(self, study: str, series: str, uid: str) -> list[str]:
        """The instances just below and above ``uid`` in its series (by slice position, else
        instance number), from one QIDO listing of the series."""
        key = (study, series)
        if key not in self._series_listing:
            self._series_listing[key] = self.client.search_instances(
                study=study, series=series, fields=[POSITION, INSTANCE_NUMBER]
            )
        rows = []
        for item in self._series_listing[key]:
            position = item.get(POSITION, {}).get("Value") or []
            number = tag_value(item, INSTANCE_NUMBER)
            order = float(position[2]) if len(position) == 3 else float(number or 0)
            rows.append((order, tag_value(item, SOP_UID) or ""))
        rows.sort()
        uids = [u for _, u in rows]
        if uid not in uids:
            return []
        at = uids.index(uid)
        return [uids[i] for i in (at - 1, at + 1) if 0 <= i < len(uids)]
