"""RECIST 1.1-style response on hand-computed cases (pure: no Neo4j)."""

import random

import pytest

from lesionkg.core.response import TrackMeasurement, assess_response

LIVER, LUNG, BONE, KIDNEY = 4, 5, 1, 6


def m(track, study, mm, coarse_type=LIVER, series=1, lesion=None):
    """One measurement; the lesion id defaults to track + study + series, e.g. A2s1."""
    return TrackMeasurement(
        track_id=track,
        lesion_id=lesion or f"{track}{study}s{series}",
        study_index=study,
        series_id=series,
        long_axis_mm=mm,
        coarse_type=coarse_type,
    )


def only_study(measurements):
    report = assess_response("P", measurements)
    assert len(report.studies) == 1
    return report.studies[0]


def test_partial_response_at_exactly_minus_30_percent():
    s = only_study([m("A", 1, 60.0), m("B", 1, 40.0, LUNG), m("A", 2, 42.0), m("B", 2, 28.0, LUNG)])
    assert (s.sld_mm, s.baseline_sld_mm, s.nadir_sld_mm) == (70.0, 100.0, 100.0)
    assert s.change_from_baseline_pct == pytest.approx(-30.0)
    assert s.category == "PR" and s.complete and s.new_lesions == ()


def test_minus_30_percent_counts_despite_float_sums():
    # 10.1 + 20.2 + 30.3 = 60.599999999999994 and 42.42 is 29.999999999999993 % below it.
    base = [m("A", 1, 10.1), m("B", 1, 20.2, LUNG), m("C", 1, 30.3, BONE)]
    follow = [m("A", 2, 7.07), m("B", 2, 14.14, LUNG), m("C", 2, 21.21, BONE)]
    assert only_study(base + follow).category == "PR"


def test_just_short_of_minus_30_percent_is_stable_disease():
    s = only_study([m("A", 1, 60.0), m("B", 1, 40.0, LUNG), m("A", 2, 42.1), m("B", 2, 28.0, LUNG)])
    assert s.change_from_baseline_pct == pytest.approx(-29.9)
    assert s.category == "SD"


def test_progression_by_20_percent_and_5_mm():
    s = only_study([m("A", 1, 30.0), m("A", 2, 36.0)])
    assert s.change_from_nadir_pct == pytest.approx(20.0)
    assert s.category == "PD"


def test_20_percent_but_less_than_5_mm_is_not_progression():
    s = only_study([m("A", 1, 20.0), m("A", 2, 24.0)])
    assert s.change_from_nadir_pct == pytest.approx(20.0)
    assert s.category == "SD"


def test_5_mm_but_less_than_20_percent_is_not_progression():
    assert only_study([m("A", 1, 50.0), m("A", 2, 55.0)]).category == "SD"


def test_progression_by_new_lesion_despite_shrinking_targets():
    s = only_study([m("A", 1, 50.0), m("A", 2, 30.0), m("N", 2, 8.0, LUNG)])
    assert s.change_from_baseline_pct == pytest.approx(-40.0)
    assert s.category == "PD"
    assert s.new_lesions == ("N2s1",) and s.new_tracks == ("N",)


def test_stable_disease():
    s = only_study([m("A", 1, 50.0), m("A", 2, 45.0)])
    assert (s.category, s.change_from_baseline_pct, s.change_from_nadir_pct) == ("SD", -10.0, -10.0)


def test_complete_response_needs_every_target_at_0_mm():
    base = [m("A", 1, 30.0), m("B", 1, 20.0, LUNG)]
    complete = only_study([*base, m("A", 2, 0.0), m("B", 2, 0.0, LUNG)])
    assert complete.category == "CR" and complete.sld_mm == 0.0
    assert complete.change_from_baseline_pct == -100.0
    # One target unmeasured: the measured one vanished, but CR cannot be claimed.
    partial = only_study([*base, m("A", 2, 0.0)])
    assert (partial.category, partial.complete, partial.measured_targets) == ("PR", False, 1)


def test_reappearance_after_complete_response_is_progression():
    report = assess_response("P", [m("A", 1, 30.0), m("A", 2, 0.0), m("A", 3, 6.0)])
    cr, back = report.studies
    assert cr.category == "CR"
    assert (back.nadir_sld_mm, back.change_from_nadir_pct, back.category) == (0.0, None, "PD")


def test_nadir_after_a_decrease():
    report = assess_response(
        "P", [m("A", 1, 100.0), m("A", 2, 60.0), m("A", 3, 70.0), m("A", 4, 75.0)]
    )
    s2, s3, s4 = report.studies
    assert (s2.category, s2.nadir_sld_mm) == ("PR", 100.0)
    # 70 mm: +16.7 % over the 60 mm nadir is no progression, -30 % from baseline is still PR.
    assert (s3.nadir_sld_mm, s3.category) == (60.0, "PR")
    assert s3.change_from_nadir_pct == pytest.approx(100 / 6)
    # 75 mm: +25 % and +15 mm over the nadir, though still 25 % below baseline.
    assert (s4.nadir_sld_mm, s4.change_from_baseline_pct) == (60.0, -25.0)
    assert s4.change_from_nadir_pct == pytest.approx(25.0)
    assert s4.category == "PD"


def test_target_selection_at_most_5_and_2_per_type():
    sizes = {
        "L50": (50.0, LIVER),
        "L45": (45.0, LIVER),
        "L40": (40.0, LIVER),  # third liver lesion
        "U35": (35.0, None),
        "U33": (33.0, None),
        "U31": (31.0, None),  # third untyped lesion: unknown types form one group
        "P20": (20.0, LUNG),
        "B10": (10.0, BONE),  # sixth eligible lesion
    }
    base = [m(t, 1, mm, ct) for t, (mm, ct) in sizes.items()]
    # At follow-up every track shrinks by 10 mm; only the targets count in the sum.
    follow = [m(t, 2, mm - 10.0, ct) for t, (mm, ct) in sizes.items()]
    report = assess_response("P", base + follow)
    assert report.targets == ("L50", "L45", "U35", "U33", "P20")
    assert report.target_lesions == ("L501s1", "L451s1", "U351s1", "U331s1", "P201s1")
    (s,) = report.studies
    assert (s.sld_mm, s.baseline_sld_mm) == (133.0, 183.0)
    assert (s.targets, s.measured_targets, s.complete, s.new_lesions) == (5, 5, True, ())


def test_several_series_in_one_study_take_the_largest():
    # The smallest per study would give 29.4 / 42 = -30 % (PR); the largest gives 30 / 42.
    rows = [
        m("A", 1, 40.0, series=1),
        m("A", 1, 42.0, series=2),
        m("A", 2, 30.0, series=3),
        m("A", 2, 29.4, series=4),
    ]
    for order in (rows, rows[::-1], random.Random(3).sample(rows, len(rows))):
        report = assess_response("P", order)
        assert report.target_lesions == ("A1s2",)
        (s,) = report.studies
        assert (s.sld_mm, s.baseline_sld_mm, s.category) == (30.0, 42.0, "SD")
        assert s.change_from_baseline_pct == pytest.approx(-100 * 12 / 42)


def test_incomplete_follow_up_is_compared_on_the_measured_subset():
    rows = [
        *(m("A", 1, 50.0), m("B", 1, 30.0, LUNG), m("C", 1, 20.0, BONE)),
        *(m("A", 2, 40.0), m("B", 2, 20.0, LUNG), m("C", 2, 10.0, BONE)),  # 70 of 100: PR
        *(m("A", 3, 45.0), m("C", 3, 14.0, BONE)),  # no B
        *(m("A", 4, 44.0), m("B", 4, 26.0, LUNG)),  # no C
    ]
    _, s3, s4 = assess_response("P", rows).studies
    # Study 3 on {A, C}: baseline 70, nadir min(70, 50) = 50, now 59: +18 % over nadir, -15.7 %.
    assert (s3.complete, s3.measured_targets, s3.targets) == (False, 2, 3)
    assert (s3.sld_mm, s3.baseline_sld_mm, s3.nadir_sld_mm) == (59.0, 70.0, 50.0)
    assert s3.change_from_baseline_pct == pytest.approx(-100 * 11 / 70)
    assert s3.change_from_nadir_pct == pytest.approx(18.0)
    assert s3.category == "SD"
    # Study 4 on {A, B}: baseline 80, nadir min(80, 60) = 60 (study 3 lacks B), now 70: +16.7 %.
    assert (s4.sld_mm, s4.baseline_sld_mm, s4.nadir_sld_mm) == (70.0, 80.0, 60.0)
    assert (s4.category, s4.complete, s4.measured_targets) == ("SD", False, 2)


def test_incomplete_follow_up_can_progress():
    rows = [m("A", 1, 50.0), m("B", 1, 30.0, LUNG), m("A", 2, 40.0), m("A", 3, 52.0)]
    _, s3 = assess_response("P", rows).studies
    # On {A}: nadir 40 (study 2), now 52: +30 % and +12 mm.
    assert (s3.nadir_sld_mm, s3.complete, s3.category) == (40.0, False, "PD")


def test_follow_up_without_target_measurements():
    rows = [
        *(m(t, 1, mm) for t, mm in [("A", 50.0), ("B", 40.0), ("C", 30.0)]),  # C: third liver
        m("C", 2, 35.0),  # only a non-target lesion
        m("N", 3, 12.0, LUNG),  # only a new lesion
    ]
    s2, s3 = assess_response("P", rows).studies
    assert (s2.category, s2.sld_mm, s2.change_from_baseline_pct) == ("NE", None, None)
    assert (s2.measured_targets, s2.targets, s2.complete) == (0, 2, False)
    assert (s3.category, s3.sld_mm, s3.new_lesions) == ("PD", None, ("N3s1",))


def test_a_lesion_measured_at_baseline_is_never_new():
    rows = [m("A", 1, 50.0), m("B", 1, 5.0, LIVER), m("C", 1, 4.0), m("A", 2, 50.0), m("C", 2, 9.0)]
    (s,) = assess_response("P", rows).studies
    assert (s.new_lesions, s.category) == ((), "SD")


def test_single_study_patient_has_no_follow_up():
    report = assess_response("000007", [m("A", 3, 20.0), m("B", 3, 10.0, LUNG)])
    assert report.patient_id == "000007"
    assert (report.baseline_study_index, report.targets, report.studies) == (3, ("A", "B"), ())


def test_no_measurements():
    report = assess_response("P", [])
    assert (report.baseline_study_index, report.targets, report.studies) == (None, (), ())


def test_baseline_is_the_first_measured_study_and_studies_are_in_time_order():
    rows = [m("A", 5, 30.0), m("A", 2, 40.0), m("A", 3, 35.0)]
    report = assess_response("P", rows)
    assert report.baseline_study_index == 2
    assert [s.study_index for s in report.studies] == [3, 5]


def test_bad_long_axis_is_refused():
    with pytest.raises(ValueError, match="X1s1"):
        assess_response("P", [m("A", 1, 10.0), m("A", 2, -1.0, lesion="X1s1")])
    with pytest.raises(ValueError, match="long axis"):
        assess_response("P", [m("A", 1, float("nan"))])
