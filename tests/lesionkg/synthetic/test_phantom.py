"""The SYNTHETIC CT phantom: organ map, tissue HU, lesion geometry and appearance, PNG format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lesionkg.synthetic import phantom as P

RNG_SEED = 20181


@pytest.fixture(scope="module")
def anatomy() -> P.Anatomy:
    rng = np.random.default_rng(RNG_SEED)
    return P.Anatomy.draw(rng, rng.random(12) < 0.5)


def _grid(shape: tuple[int, int] = (512, 512)) -> tuple[np.ndarray, np.ndarray]:
    """Reference coordinates of the pixel centres of an unshifted 512 image."""
    x = np.arange(shape[1]) - P.BODY_CENTRE_PX[0]
    y = np.arange(shape[0]) - P.BODY_CENTRE_PX[1]
    return x, y


def _organ_point(anat: P.Anatomy, i: int, organ: int, z: float) -> tuple[float, float]:
    """A pixel deep inside ``organ`` (the middle of its largest run of rows) at level z."""
    img = P.render_slice(anat.one(i), z)
    mask = img.labels == organ
    assert mask.sum() > 30, (P.LABEL_NAMES[organ], z)
    # erode by 4 px so that the point is well inside
    deep = mask.copy()
    for axis in (0, 1):
        for step in (-4, 4):
            deep &= np.roll(mask, step, axis=axis)
    rows, cols = np.nonzero(deep if deep.any() else mask)
    k = len(rows) // 2
    order = np.lexsort((cols, rows))
    return float(cols[order[k]]), float(rows[order[k]])


def test_point_labels_match_the_rendered_organ_map(anatomy: P.Anatomy) -> None:
    rng = np.random.default_rng(1)
    x, y = _grid()
    for i in range(len(anatomy.w)):
        for z in rng.uniform(0.2, 0.98, 3).astype(np.float32).tolist():
            labels = P.render_slice(anatomy.one(i), z).labels
            r, c = rng.integers(0, 512, 2000), rng.integers(0, 512, 2000)
            pts = P.labels_at(anatomy.take(np.full(2000, i)), x[c], y[r], np.full(2000, z))
            assert np.array_equal(pts, labels[r, c]), (i, z)


def test_tissues_have_plausible_hu(anatomy: P.Anatomy) -> None:
    expected = {  # label: (low, high) mean HU
        P.AIR: (-1001, -960),  # the CT table lies in the air
        P.FAT: (-120, -85),
        P.MUSCLE: (40, 70),
        P.LUNG: (-900, -760),
        P.MEDIASTINUM: (-110, -40),
        P.VESSEL: (120, 220),
        P.CORTEX: (500, 1000),
        P.MARROW: (150, 450),
        P.LIVER: (50, 95),
        P.SPLEEN: (40, 80),
        P.KIDNEY: (90, 210),
        P.VISCERAL: (-110, 20),
        P.BLADDER: (0, 25),
    }
    seen = set()
    for z in (0.30, 0.45, 0.58, 0.64, 0.68, 0.78, 0.87):
        img = P.render_slice(anatomy.one(0), z, noise_rng=np.random.default_rng(2))
        # judge tissue away from its borders (the blur mixes neighbours there)
        core = img.labels.copy()
        for axis in (0, 1):
            for step in (-2, 2):
                core[np.roll(img.labels, step, axis=axis) != img.labels] = 255
        for label, (lo, hi) in expected.items():
            m = core == label
            if m.sum() > 200:
                seen.add(label)
                assert lo <= img.hu[m].mean() <= hi, (z, P.LABEL_NAMES[label], img.hu[m].mean())
    assert seen == set(expected)


def test_noise_is_10_hu_inside_the_body_only(anatomy: P.Anatomy) -> None:
    clean = P.render_slice(anatomy.one(1), 0.62)
    noisy = P.render_slice(anatomy.one(1), 0.62, noise_rng=np.random.default_rng(3))
    diff = noisy.hu - clean.hu
    assert 9.5 < diff[clean.labels != P.AIR].std() < 10.5
    corner = (slice(0, 30), slice(0, 30))  # air outside the body (and off the table)
    assert np.all(noisy.hu[corner] == -1000.0)


def test_body_changes_from_chest_to_pelvis(anatomy: P.Anatomy) -> None:
    for i in range(4):
        chest = P.render_slice(anatomy.one(i), 0.50).labels
        abdomen = P.render_slice(anatomy.one(i), 0.64).labels
        pelvis = P.render_slice(anatomy.one(i), 0.87).labels
        body = [(m != P.AIR).sum() for m in (chest, abdomen, pelvis)]
        assert (chest == P.LUNG).sum() > 0.2 * body[0]
        assert (chest == P.HEART).sum() > 0 and (chest == P.LIVER).sum() == 0
        assert (abdomen == P.LIVER).sum() > 0 and (abdomen == P.KIDNEY).sum() > 0
        assert (pelvis == P.LUNG).sum() == 0 and (pelvis == P.BLADDER).sum() > 0
        for m in (chest, abdomen, pelvis):
            assert ((m == P.CORTEX) | (m == P.MARROW)).sum() > 300  # spine, ribs or pelvis


def _recist(cx: float, cy: float, long: float, short: float, angle: float, t: float, s: float):
    u = np.array([np.cos(angle), np.sin(angle)])
    v = np.array([-u[1], u[0]])
    c = np.array([cx, cy])
    return np.concatenate(
        [c - t * long * u, c + (1 - t) * long * u, c - s * short * v, c + (1 - s) * short * v]
    )


def _profile(hu: np.ndarray, p0: np.ndarray, p1: np.ndarray, step: float = 0.05):
    """Bilinear samples of hu along p0 -> p1 (x, y image coordinates)."""
    n = int(np.hypot(*(p1 - p0)) / step) + 1
    t = np.linspace(0.0, 1.0, n)
    x, y = p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1])
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    v = (
        hu[y0, x0] * (1 - fx) * (1 - fy)
        + hu[y0, x0 + 1] * fx * (1 - fy)
        + hu[y0 + 1, x0] * (1 - fx) * fy
        + hu[y0 + 1, x0 + 1] * fx * fy
    )
    return t * np.hypot(*(p1 - p0)), v


def _extent(hu: np.ndarray, p0: np.ndarray, p1: np.ndarray, inside: float, outside: float):
    """Length of the run around the middle of p0 -> p1 past the half-way HU."""
    d, v = _profile(hu, p0, p1)
    half = (inside + outside) / 2
    above = (v - half) * np.sign(inside - outside) > 0
    mid = len(v) // 2
    assert above[mid]
    lo = mid - np.argmin(above[mid::-1]) if not above[0] else 0
    hi = mid + np.argmin(above[mid:]) if not above[-1] else len(v) - 1
    return d[hi] - d[lo]


@pytest.mark.parametrize("angle", [0.0, 0.7, 2.1])
def test_key_slice_section_has_the_recist_axes(anatomy: P.Anatomy, angle: float) -> None:
    a = anatomy.one(2)
    x, y = _organ_point(anatomy, 2, P.LUNG, 0.47)
    long, short, t, s = 24.0, 15.0, 0.3, 0.62
    recist = _recist(x, y, long, short, angle, t, s)
    lesions = P.Lesions.from_recist(
        recist[None], zc=[400.0], cz=[7.0], code=[P.LUNG_NODULE], hu=[30.0], ident=[5]
    )
    assert np.allclose([lesions.cx[0], lesions.cy[0]], [x, y])
    img = P.render_slice(a, 0.47, z_mm=400.0, lesions=lesions)
    # the lesion map and the image both span exactly the measured axes along their lines
    lung = a.hu_lung
    for p0, p1, length in ((recist[0:2], recist[2:4], long), (recist[4:6], recist[6:8], short)):
        direction = (p1 - p0) / length
        q0, q1 = p0 - 4 * direction, p1 + 4 * direction
        assert abs(_extent(img.hu, q0, q1, 30.0, lung) - length) < 1.0
        _, ids = _profile(img.lesions.astype(float), q0, q1, step=1.0)
        assert abs((ids > 4.5).sum() - length) <= 2.0
    # a neighbouring slice 0.6 of the z semi-axis away shows 0.8 of the section; beyond, nothing
    near = P.render_slice(a, 0.47, z_mm=400.0 + 0.6 * 7.0, lesions=lesions)
    direction = (recist[2:4] - recist[0:2]) / long
    q0, q1 = recist[0:2] - 4 * direction, recist[2:4] + 4 * direction
    assert abs(_extent(near.hu, q0, q1, 30.0, lung) - 0.8 * long) < 1.0
    far = P.render_slice(a, 0.47, z_mm=400.0 + 7.5, lesions=lesions)
    assert not (far.lesions == 5).any()


CASES = [  # (type, organ, z, code, HU, expected sign of lesion - organ)
    (5, P.LUNG, 0.47, P.LUNG_NODULE, 30.0, +1),
    (4, P.LIVER, 0.61, P.LIVER_HYPO, 20.0, -1),
    (4, P.LIVER, 0.61, P.LIVER_RIM, 18.0, -1),
    (6, P.KIDNEY, 0.66, P.KIDNEY_CYST, 10.0, -1),
    (6, P.KIDNEY, 0.66, P.KIDNEY_SOLID, 40.0, -1),
    (1, P.MARROW, 0.62, P.BONE_LYTIC, 70.0, -1),
    (1, P.MARROW, 0.62, P.BONE_SCLEROTIC, 820.0, +1),
    (3, P.MEDIASTINUM, 0.41, P.NODE, 40.0, +1),
    (2, P.VISCERAL, 0.66, P.NODE, 40.0, +1),
    (8, P.VISCERAL, 0.79, P.NODE, 40.0, +1),
    (7, P.FAT, 0.62, P.SOFT_MASS, 32.0, +1),
    (7, P.MUSCLE, 0.62, P.SOFT_MASS, 32.0, -1),
]


@pytest.mark.parametrize(("kind", "organ", "z", "code", "hu", "sign"), CASES)
def test_lesions_stand_out_from_their_organ(
    anatomy: P.Anatomy, kind: int, organ: int, z: float, code: int, hu: float, sign: int
) -> None:
    a = anatomy.one(3)
    x, y = _organ_point(anatomy, 3, organ, z)
    size = 9.0 if organ == P.MARROW else 12.0  # px
    recist = _recist(x, y, size, 0.8 * size, 0.4, 0.5, 0.5)
    lesions = P.Lesions.from_recist(
        recist[None], zc=[300.0], cz=[4.0], code=[code], hu=[hu], rim=[100.0], ident=[1]
    )
    plain = P.render_slice(a, z, z_mm=300.0, noise_rng=np.random.default_rng(9))
    img = P.render_slice(a, z, z_mm=300.0, lesions=lesions, noise_rng=np.random.default_rng(9))
    yy, xx = np.mgrid[0:512, 0:512]
    r = np.hypot((xx - x) / (size / 2), (yy - y) / (0.4 * size))
    core = img.hu[(r < 0.45)]
    ring = (r > 1.3) & (r < 2.2) & (plain.labels == organ)
    assert ring.sum() >= 8
    organ_hu = np.median(img.hu[ring]) if code != P.NODE else np.median(plain.hu[ring])
    # the type's appearance (the blur takes a little off small bright lesions)
    assert abs(core.mean() - hu) < max(20.0, 0.08 * abs(hu - organ_hu))
    assert sign * (core.mean() - organ_hu) > 10.0
    if code == P.NODE:  # a node sits in a rim of fat
        halo = (r > 1.05) & (r < 1.25)
        assert np.median(img.hu[halo]) < -40.0


def test_appearance_codes_follow_the_types() -> None:
    rng = np.random.default_rng(4)
    types = np.repeat(np.arange(1, 9), 400)
    code, hu, rim = P.lesion_appearance(rng, types)
    allowed = {
        1: {P.BONE_LYTIC, P.BONE_SCLEROTIC},
        2: {P.NODE},
        3: {P.NODE},
        4: {P.LIVER_HYPO, P.LIVER_RIM},
        5: {P.LUNG_NODULE},
        6: {P.KIDNEY_CYST, P.KIDNEY_SOLID},
        7: {P.NODE, P.SOFT_MASS},
        8: {P.NODE},
    }
    ranges = {
        P.LUNG_NODULE: (20, 40),
        P.LIVER_HYPO: (10, 30),
        P.LIVER_RIM: (10, 30),
        P.KIDNEY_CYST: (5, 15),
        P.KIDNEY_SOLID: (35, 45),
        P.BONE_LYTIC: (50, 100),
        P.BONE_SCLEROTIC: (750, 900),
        P.NODE: (35, 45),
        P.SOFT_MASS: (25, 38),
    }
    for t, codes in allowed.items():
        got = set(code[types == t].tolist())
        assert got == codes, t
    for c, (lo, hi) in ranges.items():
        assert np.all((hu[code == c] >= lo) & (hu[code == c] <= hi)), P.APPEARANCE_NAMES[c]
    assert np.all(rim[code == P.LIVER_RIM] > 80) and np.all(
        rim[code != P.LIVER_RIM] == hu[code != P.LIVER_RIM]
    )


def test_png16_round_trip(tmp_path: Path) -> None:
    hu = np.array([[-1000.4, -2.6, 0.0, 60.5], [3000.0, -40000.0, 40000.0, 32767.0]], np.float32)
    path = tmp_path / "001.png"
    P.write_png16(path, hu)
    img = Image.open(path)
    assert img.mode == "I;16" and img.size == (4, 2)
    back = np.asarray(img, dtype=np.int32) - 32768
    assert back.tolist() == [[-1000, -3, 0, 60], [3000, -32768, 32767, 32767]]


def test_renders_are_deterministic(anatomy: P.Anatomy) -> None:
    a = anatomy.one(5)
    decor = P.Decor.build(a, np.random.default_rng(8))
    imgs = [
        P.render_slice(
            a,
            0.66,
            decor=decor,
            noise_rng=np.random.default_rng(1),
            study_rng=np.random.default_rng(2),
        ).hu
        for _ in range(2)
    ]
    assert np.array_equal(imgs[0], imgs[1])
    small = P.render_slice(a, 0.66, shape=(128, 128), step=4.0)
    assert small.hu.shape == (128, 128) and (small.labels == P.KIDNEY).any()
