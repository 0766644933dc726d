"""Intra-patient matching and pruning on hand-built cases and on the real validation split."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from lesionkg.core.matching import (
    BASELINE,
    CandidateEdge,
    MatchConfig,
    MatchLesion,
    ReaderAgreement,
    TrackLink,
    candidate_edges,
    match_patient,
    pair_costs,
    prune,
    reader_agreement,
    track_id_of,
)
from lesionkg.core.metrics import PairLesion, resolve_pair_lesion, score_matching
from lesionkg.core.records import LesionRecord
from lesionkg.loaders.deeplesion import parse_dl_info
from lesionkg.loaders.pairs import read_same_lesion_pairs

NAN = math.nan


def lesion(lid, study, series, loc, size=20.0, kind=None, emb=None, uid=None) -> MatchLesion:
    return MatchLesion(f"DL-{lid}", study, series, loc, size, kind, emb, uid)


def test_cost_adds_scaled_location_size_and_type():
    cfg = MatchConfig()
    a = lesion("a", 1, 1, (0.5, 0.5, 0.5), 20.0, 4)
    b = lesion("b", 2, 1, (0.5 + 0.054, 0.5, 0.5 + 0.016), 20.0 * 2.0, 5)
    expected = 2**0.5 + 1.0 * math.log(2.0) / 0.28 + 2.0
    assert pair_costs([a], [b], cfg)[0, 0] == pytest.approx(expected)
    unknown = lesion("c", 2, 1, b.location, b.long_axis_mm, None)
    # an unknown type is no evidence either way
    assert pair_costs([a], [unknown], cfg)[0, 0] == pytest.approx(expected - 2.0)


def test_embedding_distance_counts_only_where_both_have_one():
    cfg = MatchConfig(embedding_weight=1.0, embedding_scale=0.5)
    a = lesion("a", 1, 1, (0.5, 0.5, 0.5), emb=(1.0, 0.0))
    b = lesion("b", 2, 1, (0.5, 0.5, 0.5), emb=(0.0, 1.0))
    c = lesion("c", 2, 1, (0.5, 0.5, 0.5))
    costs = pair_costs([a], [b, c], cfg)
    assert costs[0, 0] == pytest.approx(1.0 / 0.5)
    assert costs[0, 1] == pytest.approx(0.0)


def test_hungarian_gives_each_lesion_at_most_one_counterpart_per_volume():
    # Two lesions per volume, close together: a greedy nearest match would give both of the
    # first volume's lesions the same partner.
    v1 = [lesion("a1", 1, 1, (0.30, 0.5, 0.50)), lesion("a2", 1, 1, (0.36, 0.5, 0.50))]
    v2 = [lesion("b1", 2, 1, (0.33, 0.5, 0.50)), lesion("b2", 2, 1, (0.39, 0.5, 0.50))]
    edges = candidate_edges(v1 + v2)
    assert {(e.source, e.target) for e in edges} == {("DL-a1", "DL-b1"), ("DL-a2", "DL-b2")}
    assert Counter(e.source for e in edges).most_common(1)[0][1] == 1
    assert Counter(e.target for e in edges).most_common(1)[0][1] == 1


def test_edges_above_the_cut_are_not_candidates():
    far = [lesion("a", 1, 1, (0.2, 0.5, 0.5)), lesion("b", 2, 1, (0.8, 0.5, 0.5))]
    assert candidate_edges(far) == []
    assert match_patient(far).count == 2


def test_pruning_never_puts_two_lesions_of_one_volume_in_a_track():
    lesions = [
        lesion("a", 1, 1, (0.5, 0.5, 0.5)),
        lesion("b", 2, 1, (0.5, 0.5, 0.5)),
        lesion("c1", 3, 1, (0.5, 0.5, 0.5)),
        lesion("c2", 3, 1, (0.5, 0.5, 0.5)),
    ]
    # a-c1 and b-c2 are each cheap, a-b cheapest: merging all three edges would put c1 and c2
    # (one volume) in one track, so the most expensive of them is dropped.
    edges = [
        CandidateEdge("DL-a", "DL-b", 0.1),
        CandidateEdge("DL-a", "DL-c1", 0.2),
        CandidateEdge("DL-b", "DL-c2", 0.3),
    ]
    tracks = prune(lesions, edges)
    assert tracks["DL-a"] == frozenset({"DL-a", "DL-b", "DL-c1"})
    assert tracks["DL-c2"] == frozenset({"DL-c2"})
    # the result does not depend on the order the edges come in
    assert prune(lesions, list(reversed(edges))) == tracks


def test_links_follow_study_then_series_order_and_flag_same_study():
    lesions = [
        lesion("z3", 3, 1, (0.5, 0.5, 0.5)),
        lesion("z1", 1, 2, (0.5, 0.5, 0.5)),
        lesion("z2", 2, 1, (0.5, 0.5, 0.5)),
        lesion("z0", 1, 1, (0.5, 0.5, 0.5)),
    ]
    result = match_patient(lesions)
    assert set(result.track_of.values()) == {track_id_of("DL-z0")} == {"T-z0"}
    chain = {(link.source, link.target): link for link in result.links}
    assert set(chain) == {("DL-z0", "DL-z1"), ("DL-z1", "DL-z2"), ("DL-z2", "DL-z3")}
    assert chain[("DL-z0", "DL-z1")].same_study
    assert not chain[("DL-z1", "DL-z2")].same_study
    assert all(link.score == pytest.approx(1.0) for link in result.links)
    # input order does not change anything
    assert match_patient(list(reversed(lesions))) == result


def test_duplicate_lesion_ids_are_refused():
    twice = [lesion("a", 1, 1, (0.5, 0.5, 0.5)), lesion("a", 2, 1, (0.5, 0.5, 0.5))]
    with pytest.raises(ValueError, match="twice"):
        match_patient(twice)


# --- PACS bookmarks: partial locations, string series ids, the readers' tracking UIDs ----------


def test_only_axes_known_in_both_lesions_count():
    cfg = MatchConfig()
    full = lesion("a", 1, "SE-1", (0.5, 0.5, 0.5))
    xy = lesion("b", 2, "SE-2", (0.5 + 0.054, 0.5 + 0.068, NAN), 20.0 * 2.0)
    # z unknown in b: x and y, one scale each, and the size term
    expected = 2**0.5 + math.log(2.0) / 0.28
    assert pair_costs([full], [xy], cfg)[0, 0] == pytest.approx(expected)
    assert pair_costs([xy], [full], cfg)[0, 0] == pytest.approx(expected)
    nowhere = lesion("c", 2, "SE-2", None)
    assert np.isinf(pair_costs([full, xy], [nowhere], cfg)).all()
    # complete locations: exactly the plain scaled Euclidean norm (results stay bit-identical)
    other = lesion("d", 2, "SE-2", (0.51, 0.47, 0.53))
    plain = np.linalg.norm(
        (np.array(full.location) - np.array(other.location)) / np.array(cfg.location_scale)
    )
    assert pair_costs([full], [other], MatchConfig(size_weight=0.0))[0, 0] == plain


def test_xy_only_lesions_match_on_xy_and_size():
    lesions = [
        lesion("a1", 1, "SE-3fa9", (0.30, 0.40, NAN), 20.0),
        lesion("a2", 1, "SE-3fa9", (0.33, 0.40, NAN), 40.0),
        lesion("b1", 2, "SE-77c0", (0.32, 0.40, NAN), 21.0),
        lesion("b2", 2, "SE-77c0", (0.31, 0.40, NAN), 38.0),
    ]
    # b1 is nearer a2 and b2 nearer a1 by location; size decides the other way
    result = match_patient(lesions)
    assert result.track_of == {
        "DL-a1": "T-a1",
        "DL-b1": "T-a1",
        "DL-a2": "T-a2",
        "DL-b2": "T-a2",
    }
    assert {(link.source, link.target, link.by) for link in result.links} == {
        ("DL-a1", "DL-b1", "matching"),
        ("DL-a2", "DL-b2", "matching"),
    }


def test_lesions_without_location_stay_singletons_unless_a_reader_links_them():
    lesions = [
        lesion("a1", 1, "SE-1", (0.30, 0.40, 0.50)),
        lesion("a2", 1, "SE-1", None),
        lesion("b1", 2, "SE-2", (0.30, 0.40, 0.50)),
        lesion("b2", 2, "SE-2", None),
        lesion("c1", 3, "SE-3", None),
    ]
    # a square volume pair whose only complete assignment uses an inf entry: no error, and the
    # located pair still matches
    assert [(e.source, e.target) for e in candidate_edges(lesions)] == [("DL-a1", "DL-b1")]
    result = match_patient(lesions)
    assert result.count == 4 and result.track_of["DL-b1"] == "T-a1"
    assert {result.track_of[x] for x in ("DL-a2", "DL-b2", "DL-c1")} == {"T-a2", "T-b2", "T-c1"}
    linked = [
        lesions[0],
        lesion("a2", 1, "SE-1", None, uid="TU-1"),
        lesions[2],
        lesion("b2", 2, "SE-2", None),
        lesion("c1", 3, "SE-3", None, uid="TU-1"),
    ]
    result = match_patient(linked)
    assert result.track_of["DL-c1"] == result.track_of["DL-a2"] == "T-a2"
    (link,) = [x for x in result.links if x.source == "DL-a2"]
    # nothing to compare: the reader's word alone, score 0
    assert link == TrackLink("DL-a2", "DL-c1", 0.0, False, "reader")


def crossed(uids: bool) -> list[MatchLesion]:
    """Two lesions in two studies; by location a1-b1 and a2-b2, by the readers a1-b2, a2-b1."""
    return [
        lesion("a1", 1, "SE-1", (0.30, 0.40, NAN), uid="TU-x" if uids else None),
        lesion("a2", 1, "SE-1", (0.60, 0.40, NAN), uid="TU-y" if uids else None),
        lesion("b1", 2, "SE-2", (0.31, 0.40, NAN), uid="TU-y" if uids else None),
        lesion("b2", 2, "SE-2", (0.61, 0.40, NAN), uid="TU-x" if uids else None),
    ]


def test_reader_links_outrank_cheaper_inferred_edges():
    inferred = match_patient(crossed(uids=False))
    assert inferred.track_of["DL-b1"] == "T-a1" and inferred.track_of["DL-b2"] == "T-a2"
    result = match_patient(crossed(uids=True))
    assert result.track_of == {"DL-a1": "T-a1", "DL-b2": "T-a1", "DL-a2": "T-a2", "DL-b1": "T-a2"}
    assert {(x.source, x.target, x.by) for x in result.links} == {
        ("DL-a1", "DL-b2", "reader"),
        ("DL-a2", "DL-b1", "reader"),
    }
    assert result.reader_conflicts == 0
    # reader_links=False ignores the UIDs altogether
    assert match_patient(crossed(uids=True), reader_links=False).track_of == inferred.track_of
    assert all(x.by == "matching" for x in match_patient(crossed(True), reader_links=False).links)


def test_the_assignment_leaves_out_lesions_the_readers_already_paired():
    lesions = [
        lesion("a1", 1, "SE-1", (0.50, 0.50, NAN), uid="TU-x"),
        lesion("a2", 1, "SE-1", (0.70, 0.52, NAN)),
        lesion("b1", 2, "SE-2", (0.70, 0.50, NAN), uid="TU-x"),  # moved, says the reader
        lesion("b2", 2, "SE-2", (0.50, 0.52, NAN)),
    ]
    # By cost alone a1-b2 and a2-b1 (0.3 each) beat a2-b2 (3.7): both would be dropped when
    # pruning (a1 and b1 already have their counterparts), leaving a2 and b2 unmatched.
    plain = [(e.source, e.target) for e in candidate_edges(lesions, reader_links=False)]
    assert plain == [("DL-a1", "DL-b2"), ("DL-a2", "DL-b1")]
    edges = candidate_edges(lesions)
    assert [(e.source, e.target) for e in edges] == [("DL-a2", "DL-b2")]
    assert edges[0].cost == pytest.approx(0.2 / 0.054)
    result = match_patient(lesions)
    assert result.track_of == {"DL-a1": "T-a1", "DL-b1": "T-a1", "DL-a2": "T-a2", "DL-b2": "T-a2"}


def test_reader_link_within_one_volume_is_refused_and_counted():
    lesions = [
        lesion("a1", 1, "SE-1", (0.3, 0.4, NAN), uid="TU-x"),
        lesion("a2", 1, "SE-1", (0.6, 0.4, NAN), uid="TU-x"),
        lesion("b1", 2, "SE-2", (0.6, 0.4, NAN), uid="TU-x"),
    ]
    result = match_patient(lesions)
    # joins go in (volume, lesion_id) order: a1 takes the UID's track, a2 cannot join it
    assert result.reader_conflicts == 1
    assert result.track_of == {"DL-a1": "T-a1", "DL-b1": "T-a1", "DL-a2": "T-a2"}
    assert [(x.source, x.target, x.by) for x in result.links] == [("DL-a1", "DL-b1", "reader")]


def test_an_inferred_edge_never_joins_two_tracking_uids():
    same_place = (0.5, 0.5, NAN)
    lesions = [
        lesion("a", 1, "SE-1", same_place, uid="TU-x"),
        lesion("c", 2, "SE-2", same_place),
        lesion("d", 3, "SE-3", same_place, uid="TU-y"),
    ]
    assert match_patient(lesions, reader_links=False).count == 1
    result = match_patient(lesions)
    # a-c (no UID on c) joins; c-d would put TU-x and TU-y in one track; a-d is never a candidate
    assert result.track_of == {"DL-a": "T-a", "DL-c": "T-a", "DL-d": "T-d"}
    assert [(x.source, x.target, x.by) for x in result.links] == [("DL-a", "DL-c", "matching")]
    # pruning alone refuses the edge too, however cheap
    edges = [CandidateEdge("DL-a", "DL-d", 0.0), CandidateEdge("DL-c", "DL-d", 0.1)]
    assert prune(lesions, edges)["DL-d"] == frozenset({"DL-d", "DL-c"})
    assert prune(lesions, edges[:1])["DL-d"] == frozenset({"DL-d"})
    assert prune(lesions, edges[:1], reader_links=False)["DL-d"] == frozenset({"DL-a", "DL-d"})


def test_a_lesion_with_a_uid_still_gets_inferred_partners_in_volumes_without_one():
    lesions = [
        lesion("a", 1, "SE-1", (0.5, 0.5, NAN)),  # the earlier report gave no UID
        lesion("b", 2, "SE-2", (0.5, 0.5, NAN), uid="TU-x"),
        lesion("c", 3, "SE-3", (0.9, 0.1, NAN), uid="TU-x"),
    ]
    result = match_patient(lesions)
    assert set(result.track_of.values()) == {"T-a"}
    assert [(x.source, x.target, x.by) for x in result.links] == [
        ("DL-a", "DL-b", "matching"),
        ("DL-b", "DL-c", "reader"),
    ]


def test_string_series_ids_order_volumes_and_mixed_kinds_are_refused():
    lesions = [
        lesion("z", 2, "SE-00ff", (0.5, 0.5, 0.5)),
        lesion("y", 1, "SE-a1b2", (0.5, 0.5, 0.5)),
        lesion("x", 1, "SE-0c3d", (0.5, 0.5, 0.5)),
    ]
    result = match_patient(lesions)
    assert set(result.track_of.values()) == {"T-x"}
    assert [(x.source, x.target, x.same_study) for x in result.links] == [
        ("DL-x", "DL-y", True),
        ("DL-y", "DL-z", False),
    ]
    with pytest.raises(ValueError, match="mix int and str series ids"):
        match_patient([*lesions, lesion("w", 3, 4, (0.5, 0.5, 0.5))])


def test_reader_agreement_counts_consecutive_pairs_in_two_volumes():
    crossing = crossed(uids=True)
    assert reader_agreement(crossing) == ReaderAgreement(pairs=2, agree=0, disagree=2)
    agreeing = [
        lesion("a1", 1, "SE-1", (0.30, 0.40, NAN), uid="TU-x"),
        lesion("b1", 2, "SE-2", (0.31, 0.40, NAN), uid="TU-x"),
        lesion("c1", 3, "SE-3", (0.31, 0.41, NAN), uid="TU-x"),
        lesion("c2", 3, "SE-3", (0.80, 0.80, NAN), uid="TU-x"),  # same volume as c1: a conflict
        lesion("c3", 3, "SE-3", (0.50, 0.50, NAN)),
    ]
    found = reader_agreement(agreeing)
    assert found == ReaderAgreement(pairs=2, agree=2, disagree=0)
    assert found.as_dict() == {"pairs": 2, "agree": 2, "disagree": 0}
    assert (found + reader_agreement(crossing)).as_dict() == {"pairs": 4, "agree": 2, "disagree": 2}
    assert reader_agreement(crossed(uids=False)) == ReaderAgreement()


def test_score_matching_counts_hits_wrongs_and_misses_by_hand():
    volume = {"a": ("p", 1, 1), "b": ("p", 2, 1), "c": ("p", 2, 1), "d": ("p", 3, 1)}
    types = {"a": 4, "b": 4, "c": 5, "d": None}
    tracks = {"a": "T1", "b": "T1", "c": "T2", "d": "T2"}
    scores = score_matching([("a", "b"), ("c", "a"), ("a", "c"), ("a", "d")], tracks, volume, types)
    # (a,b) hit; (c,a): c's track has nothing in a's volume -> miss; (a,c): b there -> wrong;
    # (a,d): nothing of T1 in d's volume -> miss
    assert (scores.hits, scores.wrongs, scores.misses) == (1, 1, 2)
    assert scores.recall == 0.25 and scores.precision == 0.5
    assert scores.multi_tracks == 2 and scores.mixed_type_tracks == 0


def test_pair_lesion_is_resolved_by_diameters_when_a_slice_has_several():
    two = [PairLesion("x", "f.png", 30.0, 20.0), PairLesion("y", "f.png", 12.0, 8.0)]
    assert resolve_pair_lesion("f.png", (12.1, 7.9), two) == "y"
    assert resolve_pair_lesion("f.png", None, two) is None
    assert resolve_pair_lesion("f.png", None, two[:1]) == "x"
    assert resolve_pair_lesion("g.png", (1.0, 1.0), []) is None


@pytest.fixture(scope="module")
def val_records(val_csv) -> list[LesionRecord]:
    return [r for r in parse_dl_info(val_csv) if isinstance(r, LesionRecord)]


@pytest.fixture(scope="module")
def val_pairs(deeplesion_dir, val_records) -> list[tuple[str, str]]:
    by_file = defaultdict(list)
    for r in val_records:
        by_file[r.file_name].append(
            PairLesion(r.lesion_id, r.file_name, r.long_axis_mm, r.short_axis_mm)
        )
    out = []
    for p in read_same_lesion_pairs(deeplesion_dir / "dls" / "dls_valid_pairs.csv"):
        a = resolve_pair_lesion(
            p.source_file_name, p.source_diameters_mm, by_file[p.source_file_name]
        )
        b = resolve_pair_lesion(
            p.target_file_name, p.target_diameters_mm, by_file[p.target_file_name]
        )
        out.append((a, b))
    return out


def test_real_validation_split_tracks_obey_the_rules_and_beat_the_baseline(val_records, val_pairs):
    assert len(val_pairs) == 906 and all(a and b for a, b in val_pairs)
    by_patient = defaultdict(list)
    for r in val_records:
        by_patient[r.patient_id].append(
            MatchLesion(
                r.lesion_id, r.study_index, r.series_id, r.location, r.long_axis_mm, r.coarse_type
            )
        )
    volume = {r.lesion_id: (r.patient_id, r.study_index, r.series_id) for r in val_records}
    types = {r.lesion_id: r.coarse_type for r in val_records}
    results = {}
    for name, cfg in (("ours", MatchConfig()), ("baseline", BASELINE)):
        track_of = {}
        for rows in by_patient.values():
            tracks = match_patient(rows, cfg)
            track_of.update(tracks.track_of)
            members = defaultdict(list)
            for lid, t in tracks.track_of.items():
                members[t].append(lid)
            for group in members.values():
                vols = [volume[x] for x in group]
                assert len(vols) == len(set(vols)), "a track holds two lesions of one volume"
            for link in tracks.links:
                assert volume[link.source][1:] < volume[link.target][1:]
        assert set(track_of) == set(volume)
        results[name] = score_matching(val_pairs, track_of, volume, types)
    ours, base = results["ours"], results["baseline"]
    # Measured: ours 0.929 / 0.958, baseline 0.923 / 0.950 (issue 4 quotes 0.932 / 0.959); the
    # exact counts pin them, e.g. against changes for PACS bookmarks (partial locations, UIDs).
    assert (ours.hits, ours.wrongs, ours.misses) == (842, 37, 27)
    assert (base.hits, base.wrongs, base.misses) == (836, 44, 26)
    assert ours.recall >= base.recall and ours.precision > base.precision
    assert ours.recall > 0.9 and ours.precision > 0.95
    assert ours.mixed_type_share < base.mixed_type_share


def test_pairs_come_in_both_directions_mostly(val_pairs):
    # a sanity check of the ground truth the scores rest on
    directed = set(val_pairs)
    both = sum(1 for a, b in directed if (b, a) in directed)
    assert both / len(directed) > 0.8
    assert not any(a == b for a, b in itertools.chain(val_pairs))
