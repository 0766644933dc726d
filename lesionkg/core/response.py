"""A RECIST 1.1-style response per follow-up study of one patient, from lesion track measurements.

Pure: no Neo4j, no files. The input is one patient's :class:`TrackMeasurement` rows (a track is one
physical lesion measured over time, see ``Lesion.track_id``); the output a
:class:`ResponseReport` with one :class:`StudyResponse` per follow-up study. Lengths are
millimetres, changes percent of the reference sum (``-30.0`` is a 30 % decrease). Nothing is
rounded here; callers round for display.

This is a **simplification of RECIST 1.1** (Eisenhauer et al., Eur J Cancer 2009) for
DeepLesion-style bookmarks, not a trial read. Bookmarks are whatever a radiologist happened to
measure, so the rules below keep the RECIST arithmetic and say where they depart from it:

- **One measurement per track and study.** When several series of one study measured the same
  track (e.g. venous and delayed phase, or thin and thick slices), the largest long axis counts:
  RECIST asks for the *longest* diameter, the maximum does not depend on the order of the rows,
  and it never lets a second, partial measurement of the same lesion fake a shrinkage.
- **Baseline** is the patient's first study (smallest ``study_index``) with measurements.
- **Target lesions** are tracks measured at baseline, largest baseline long axis first (ties by
  track id), at most 5 in all and at most 2 per organ. The coarse lesion type stands in for the
  organ (:mod:`lesionkg.graph.cohort` passes the label, else the predicted type); lesions without a
  type form one group of their own (so at most 2 of them). RECIST's measurability thresholds
  (10 mm, 15 mm short axis for nodes) are not applied: a bookmark is by definition a finding the
  radiologist chose to measure. Tracks measured at baseline that are not
  targets are non-target lesions and are not assessed further (RECIST's qualitative "unequivocal
  progression" of non-targets cannot be read from measurements).
- **Follow-up studies** are the later studies with at least one measurement. In each:

  - ``sld_mm``: sum of the longest diameters of the target lesions measured in it.
  - ``change_from_baseline_pct``: versus the baseline sum; ``change_from_nadir_pct``: versus the
    nadir, the smallest sum of any earlier study (baseline included; see sparse follow-ups).
  - ``new_lesions``: tracks whose first measurement is in this study (their lesion ids;
    ``new_tracks`` holds their track ids). "New" means *first bookmarked*: a lesion present but
    not measured before is counted as new, so PD by new lesion is an upper bound.
  - ``category``, first rule that holds:

    - **PD** if there is any new lesion, or the sum grew by >= 20 % over the nadir *and* by
      >= 5 mm absolute;
    - **CR** if every target lesion was measured and the sum is 0 mm;
    - **PR** if the sum fell by >= 30 % from baseline;
    - **SD** otherwise;
    - **NE** (not evaluable, as in RECIST) when no target lesion was measured and there is no
      new lesion.

  Thresholds are compared with a relative tolerance of 1e-9, so a change of exactly -30 % or
  +20 % counts even when floating-point sums land a hair short of it.

- **Sparse follow-ups (the honest approximation).** Bookmarks rarely re-measure every target.
  When only some targets were measured in a study, the comparison is made on that subset: the
  baseline sum and the nadir are recomputed over the same tracks, and the nadir only considers
  earlier studies that measured all of them (so every sum compared covers the same lesions). Such
  a study is marked ``complete=False`` with ``measured_targets`` of ``targets``. RECIST itself
  would call an incomplete assessment NE unless it already shows PD; read incomplete categories
  as an estimate.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

#: at most this many target lesions in all, and per organ (RECIST 1.1, section 4.2)
MAX_TARGETS = 5
MAX_TARGETS_PER_ORGAN = 2
#: partial response: the sum fell by at least this fraction of the baseline sum
PR_DECREASE = 0.30
#: progression: the sum grew by at least this fraction of the nadir and by at least PD_MIN_MM
PD_INCREASE = 0.20
PD_MIN_MM = 5.0

Category = Literal["CR", "PR", "SD", "PD", "NE"]

# Float sums of mm values can land a hair beside an exact threshold (0.1 + 0.2 != 0.3).
_REL_TOL = 1e-9


@dataclass(frozen=True, slots=True)
class TrackMeasurement:
    """One measurement of one track: a Lesion node with its ``track_id``.

    ``study_index`` is the 1-based time order of the patient's studies; ``long_axis_mm`` the
    RECIST diameter in mm; ``coarse_type`` the DeepLesion coarse type 1..8 used as the organ proxy,
    or ``None`` when unknown.
    """

    track_id: str
    lesion_id: str
    study_index: int
    series_id: int
    long_axis_mm: float
    coarse_type: int | None


@dataclass(frozen=True, slots=True)
class StudyResponse:
    """The response category of one follow-up study (lengths mm, changes % of the reference).

    ``baseline_sld_mm`` and ``nadir_sld_mm`` are restricted to the target tracks measured in this
    study; both change percentages are ``None`` when their reference sum is 0 mm or no target was
    measured (then every sum is ``None`` too).
    """

    study_index: int
    sld_mm: float | None
    baseline_sld_mm: float | None
    nadir_sld_mm: float | None
    change_from_baseline_pct: float | None
    change_from_nadir_pct: float | None
    category: Category
    new_lesions: tuple[str, ...]
    measured_targets: int
    targets: int
    complete: bool
    new_tracks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResponseReport:
    """One patient's response: baseline, target tracks and one entry per follow-up study.

    ``targets`` are track ids in selection order (largest baseline long axis first);
    ``target_lesions`` the baseline lesion ids of those tracks, in the same order.
    ``baseline_study_index`` is ``None`` only when there were no measurements at all.
    """

    patient_id: str
    baseline_study_index: int | None
    targets: tuple[str, ...]
    studies: tuple[StudyResponse, ...]
    target_lesions: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return describe_response(self)


def _at_least(value: float, threshold: float) -> bool:
    return value >= threshold - _REL_TOL * max(abs(value), abs(threshold), 1.0)


def _per_track_and_study(
    measurements: Iterable[TrackMeasurement],
) -> dict[tuple[str, int], TrackMeasurement]:
    """The largest measurement of each (track, study); ties go to the smallest lesion id."""
    best: dict[tuple[str, int], TrackMeasurement] = {}
    for m in measurements:
        if not math.isfinite(m.long_axis_mm) or m.long_axis_mm < 0:
            raise ValueError(
                f"lesion {m.lesion_id}: long axis must be a finite length >= 0 mm, "
                f"got {m.long_axis_mm!r}"
            )
        key = (m.track_id, m.study_index)
        held = best.get(key)
        if held is None or (m.long_axis_mm, held.lesion_id) > (held.long_axis_mm, m.lesion_id):
            best[key] = m
    return best


def select_targets(baseline: Sequence[TrackMeasurement]) -> list[TrackMeasurement]:
    """Target lesions among one study's measurements (one per track): largest first, at most
    :data:`MAX_TARGETS` in all and :data:`MAX_TARGETS_PER_ORGAN` per coarse type (``None`` is one
    group)."""
    chosen: list[TrackMeasurement] = []
    per_organ: dict[int | None, int] = defaultdict(int)
    for m in sorted(baseline, key=lambda m: (-m.long_axis_mm, m.track_id)):
        if len(chosen) == MAX_TARGETS:
            break
        if per_organ[m.coarse_type] < MAX_TARGETS_PER_ORGAN:
            chosen.append(m)
            per_organ[m.coarse_type] += 1
    return chosen


def _category(
    sld: float | None,
    baseline_sld: float | None,
    nadir_sld: float | None,
    complete: bool,
    has_new: bool,
) -> Category:
    if has_new:
        return "PD"
    if sld is None or baseline_sld is None or nadir_sld is None:
        return "NE"
    growth = sld - nadir_sld
    if _at_least(growth, PD_INCREASE * nadir_sld) and _at_least(growth, PD_MIN_MM):
        return "PD"
    if complete and sld == 0:
        return "CR"
    if _at_least(baseline_sld - sld, PR_DECREASE * baseline_sld):
        return "PR"
    return "SD"


def _pct(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return (value - reference) / reference * 100.0


def assess_response(patient_id: str, measurements: Iterable[TrackMeasurement]) -> ResponseReport:
    """The RECIST 1.1-style response of each follow-up study (rules in the module docstring).

    ``measurements`` are one patient's track measurements in any order. A patient with a single
    study gets an empty ``studies``; one without measurements also gets ``baseline_study_index``
    ``None``. Raises :class:`ValueError` for a negative or non-finite long axis.
    """
    best = _per_track_and_study(measurements)
    if not best:
        return ResponseReport(patient_id, None, (), ())

    by_study: dict[int, dict[str, TrackMeasurement]] = defaultdict(dict)
    first_study: dict[str, int] = {}
    for (track, study), m in best.items():
        by_study[study][track] = m
        first_study[track] = min(first_study.get(track, study), study)

    studies = sorted(by_study)
    baseline = studies[0]
    targets = select_targets(list(by_study[baseline].values()))
    target_ids = [m.track_id for m in targets]

    def sld(study: int, tracks: Sequence[str]) -> float:
        return sum(by_study[study][t].long_axis_mm for t in tracks)

    responses = []
    for i, study in enumerate(studies[1:], start=1):
        here = by_study[study]
        measured = [t for t in target_ids if t in here]
        new = sorted(
            (m for t, m in here.items() if first_study[t] == study),
            key=lambda m: (-m.long_axis_mm, m.track_id),
        )
        current = baseline_sld = nadir = None
        if measured:
            current = sld(study, measured)
            baseline_sld = sld(baseline, measured)
            # Only earlier studies that measured every track of the subset give comparable sums;
            # the baseline always does, so the nadir always exists.
            nadir = min(
                sld(s, measured) for s in studies[:i] if all(t in by_study[s] for t in measured)
            )
        complete = len(measured) == len(target_ids)
        responses.append(
            StudyResponse(
                study_index=study,
                sld_mm=current,
                baseline_sld_mm=baseline_sld,
                nadir_sld_mm=nadir,
                change_from_baseline_pct=_pct(current, baseline_sld),
                change_from_nadir_pct=_pct(current, nadir),
                category=_category(current, baseline_sld, nadir, complete, bool(new)),
                new_lesions=tuple(m.lesion_id for m in new),
                measured_targets=len(measured),
                targets=len(target_ids),
                complete=complete,
                new_tracks=tuple(m.track_id for m in new),
            )
        )
    return ResponseReport(
        patient_id=patient_id,
        baseline_study_index=baseline,
        targets=tuple(target_ids),
        studies=tuple(responses),
        target_lesions=tuple(m.lesion_id for m in targets),
    )


def _pct_text(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def _mm_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def describe_response(report: ResponseReport) -> str:
    """The report as a text table: one line per follow-up study."""
    if report.baseline_study_index is None:
        return f"patient {report.patient_id}: no tracked lesions (run `lesionkg match`)"
    lines = [
        f"patient {report.patient_id}: baseline study {report.baseline_study_index}, "
        f"{len(report.targets)} target lesion(s): {', '.join(report.targets)}",
        f"{'study':>5} {'SLD mm':>8} {'vs base':>8} {'vs nadir':>9} {'targets':>8}  category",
    ]
    for st in report.studies:
        new = f"  new: {', '.join(st.new_tracks or st.new_lesions)}" if st.new_lesions else ""
        subset = "" if st.complete else " (measured subset)"
        lines.append(
            f"{st.study_index:>5} {_mm_text(st.sld_mm):>8} "
            f"{_pct_text(st.change_from_baseline_pct):>8} "
            f"{_pct_text(st.change_from_nadir_pct):>9} {st.measured_targets:>3}/{st.targets:<4}  "
            f"{st.category}{subset}{new}"
        )
    if not report.studies:
        lines.append("no follow-up study")
    return "\n".join(lines)
