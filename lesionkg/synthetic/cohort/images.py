"""CT images of the SYNTHETIC cohort: every volume's key slices and neighbours rendered by the
phantom, their ground truth, the unlabelled SSBR volumes, and the forked workers that write them."""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from lesionkg.synthetic import phantom
from lesionkg.synthetic.cohort.drawing import Chunk, pick
from lesionkg.synthetic.cohort.tables import (
    COMMON_FOV,
    COMMON_FOV_P,
    FOV_RANGE,
    GENERATOR,
    P_COMMON_FOV,
    P_MALE,
    SSBR_DIR,
    SSBR_METADATA_NAME,
    VERSION,
)
from lesionkg.synthetic.phantom import BODY_MM_PER_Z, PX_FROM_LOC, Anatomy

_CZ_FACTOR = (0.8, 1.25)  # z semi-axis / half the short axis, per track
_PNG_LEVEL = 1  # zlib level: the noise makes higher levels slow for ~5% smaller files
_SSBR_Z_RANGE = (0.30, 0.95)  # chest to pelvis


def volume_name(patient: int, study: int, series: int) -> str:
    return f"{patient:06d}_{study:02d}_{series:02d}"


def _recist_of(
    cx: np.ndarray,
    cy: np.ndarray,
    theta: np.ndarray,
    long_px: np.ndarray,
    short_px: np.ndarray,
    cross: np.ndarray,
) -> np.ndarray:
    """RECIST endpoints (n, 8) of axes at angle theta crossing at fractions ``cross``."""
    ux, uy = np.cos(theta), np.sin(theta)
    vx, vy = -uy, ux
    t, s = cross[:, 0], cross[:, 1]
    return np.stack(
        [cx - t * long_px * ux, cy - t * long_px * uy,
         cx + (1 - t) * long_px * ux, cy + (1 - t) * long_px * uy,
         cx - s * short_px * vx, cy - s * short_px * vy,
         cx + (1 - s) * short_px * vx, cy + (1 - s) * short_px * vy], axis=1
    )  # fmt: skip


class ChunkImages:
    """Renders the key slices (and neighbours) of every volume of one chunk."""

    def __init__(self, chunk: Chunk, first_row: int, seed: int) -> None:
        sc = chunk.scene
        self.chunk, self.sc, self.seed = chunk, sc, seed
        n_rows = len(chunk.patient)
        self.row_number = np.arange(first_row, first_row + n_rows)
        # appearance per track, drawn from its own stream (so rows never depend on it)
        self.code, self.hu, self.rim = phantom.lesion_appearance(sc.look_rng, sc.tr_type)
        self.czf = sc.look_rng.uniform(*_CZ_FACTOR, len(sc.tr_type))
        rt, rg = sc.r_track, sc.r_group
        spacing = chunk.xy_spacing
        self.cz = 0.5 * chunk.diam[:, 1] * spacing * self.czf[rt]
        dz = chunk.z_spacing
        self.key_z = sc.g_top[rg] + (chunk.key - 0.5) * dz  # the key slice's plane, mm
        # lesions present but not bookmarked in a study (track gaps): the same ellipsoid
        gt, gs = sc.gap_track, sc.gap_study
        steps = sc.st_no[gs] - sc.tr_birth_no[gt]
        g_spacing = sc.st_spacing[gs]
        long_mm = np.clip(
            np.exp(sc.tr_log_long[gt] + sc.tr_trend[gt] * steps),
            2.0,
            np.minimum(250.0, 470 * g_spacing),
        )
        long_px = long_mm / g_spacing
        short_px = long_px * np.clip(sc.tr_ratio[gt], 0.12, 1.0)
        cx = PX_FROM_LOC[0][0] + PX_FROM_LOC[0][1] * sc.tr_loc[gt, 0] + sc.tr_px_off[gt, 0]
        cy = PX_FROM_LOC[1][0] + PX_FROM_LOC[1][1] * sc.tr_loc[gt, 1] + sc.tr_px_off[gt, 1]
        self.gap_recist = _recist_of(
            cx + sc.st_shift[gs, 0], cy + sc.st_shift[gs, 1], sc.tr_theta[gt], long_px, short_px,
            sc.tr_cross[gt],
        )  # fmt: skip
        self.gap_cz = 0.5 * short_px * g_spacing * self.czf[gt]
        self.gap_z = sc.tr_loc[gt, 2] * BODY_MM_PER_Z * sc.body_scale[sc.st_pat[gs]]
        self.gap_order = np.argsort(gs, kind="stable")
        self.gap_starts = np.searchsorted(gs[self.gap_order], np.arange(len(sc.st_no) + 1))
        self.slices = self._slices()
        self._decor_of = -1
        self._decor: phantom.Decor | None = None

    def _slices(self) -> list[tuple[int, int, list[int]]]:
        """(study row, series group, slice numbers) of every volume, in row order."""
        c, sc = self.chunk, self.sc
        out = []
        bounds = np.flatnonzero(np.diff(sc.r_group)) + 1
        for rows in np.split(np.arange(len(c.patient)), bounds):
            if not len(rows):
                continue
            want: set[int] = set()
            for i in rows.tolist():
                lo, hi, k = int(c.slice_lo[i]), int(c.slice_hi[i]), int(c.key[i])
                want.update(j for j in (k - 1, k, k + 1) if lo <= j <= hi)
            out.append((int(sc.r_study[rows[0]]), int(sc.r_group[rows[0]]), sorted(want)))
        return out

    def count(self) -> int:
        return sum(len(v[2]) for v in self.slices)

    def _lesions(self, study: int, group: int) -> phantom.Lesions:
        """Every lesion present in the study: the volume's own rows at their key slices, rows of
        the study's other series and unmeasured lesions at the track's z."""
        c, sc = self.chunk, self.sc
        rows = np.flatnonzero(sc.r_study == study)
        own = rows[sc.r_group[rows] == group]
        other = rows[sc.r_group[rows] != group]
        other = other[~np.isin(sc.r_track[other], sc.r_track[own])]
        _, first = np.unique(sc.r_track[other], return_index=True)
        other = other[np.sort(first)]
        use = np.concatenate([own, other])
        zc = np.concatenate([self.key_z[own], sc.z_mm[other]])
        gaps = self.gap_order[self.gap_starts[study] : self.gap_starts[study + 1]]
        gt = sc.gap_track[gaps]
        rt = sc.r_track[use]
        return phantom.Lesions.from_recist(
            np.concatenate([c.recist[use], self.gap_recist[gaps]]),
            zc=np.concatenate([zc, self.gap_z[gaps]]),
            cz=np.concatenate([self.cz[use], self.gap_cz[gaps]]),
            code=np.concatenate([self.code[rt], self.code[gt]]),
            hu=np.concatenate([self.hu[rt], self.hu[gt]]),
            rim=np.concatenate([self.rim[rt], self.rim[gt]]),
            ident=np.concatenate([self.row_number[use], np.zeros(len(gaps), np.int64)]),
        )

    def volume(self, study: int, group: int) -> SimpleNamespace:
        """Everything needed to render slices of one volume (series group of a study)."""
        c, sc = self.chunk, self.sc
        p = int(sc.st_pat[study])
        patient, study_no = sc.first_patient + p, int(sc.st_no[study])
        rows = np.flatnonzero(sc.r_group == group)
        series = int(c.series[rows[0]])
        if self._decor_of != p:  # patients come in order: keep the last one's decorations
            self._decor = phantom.Decor.build(
                sc.anatomy.one(p), np.random.default_rng([self.seed, 9, patient])
            )
            self._decor_of = p
        return SimpleNamespace(
            name=volume_name(patient, study_no, series),
            ids=(patient, study_no, series),
            rows=rows,
            anatomy=sc.anatomy.one(p),
            decor=self._decor,
            look=phantom.StudyLook.draw(np.random.default_rng([self.seed, 8, patient, study_no])),
            lesions=self._lesions(study, group),
            top=float(sc.g_top[group]),
            dz=float(c.z_spacing[rows[0]]),
            per_mm=BODY_MM_PER_Z * float(sc.body_scale[p]),
            shift=(float(sc.st_shift[study, 0]), float(sc.st_shift[study, 1])),
        )

    def render(self, vol: SimpleNamespace, k: int) -> phantom.SliceImage:
        """Slice k (1-based) of a volume: HU, organ labels and lesion map."""
        patient, study_no, series = vol.ids
        z_mm = vol.top + (k - 0.5) * vol.dz
        return phantom.render_slice(
            vol.anatomy,
            z_mm / vol.per_mm,
            z_mm=z_mm,
            shift=vol.shift,
            look=vol.look,
            lesions=vol.lesions,
            decor=vol.decor,
            noise_rng=np.random.default_rng([self.seed, 7, patient, study_no, series, k]),
            study_rng=np.random.default_rng([self.seed, 8, patient, study_no, 1]),
        )

    def write(self, images_dir: Path, bar: Any, workers: int) -> int:
        """Render and write every volume (patients shared out over ``workers`` processes)."""
        pats = [int(self.sc.st_pat[study]) for study, _, _ in self.slices]
        bounds = np.flatnonzero(np.diff(pats)) + 1
        jobs = [(images_dir, v.tolist()) for v in np.split(np.arange(len(pats)), bounds)]
        return _run_jobs(self, _write_volumes, jobs, workers, bar)

    def truth_lines(self) -> list[str]:
        """Ground truth per row: true type, appearance, organ, centre, anatomical place, z."""
        c, sc = self.chunk, self.sc
        rt = sc.r_track
        body = sc.tr_loc[rt, :2] + sc.tr_px_off[rt] / (PX_FROM_LOC[0][1], PX_FROM_LOC[1][1])
        les = phantom.Lesions.from_recist(c.recist, zc=self.key_z, cz=self.cz)
        shift = sc.st_shift[sc.r_study]
        # the organ at the exact centre of the key slice (the organ map the image was drawn from)
        pat = sc.st_pat[sc.r_study]
        organ = phantom.labels_at(
            sc.anatomy.take(pat),
            les.cx - phantom.BODY_CENTRE_PX[0] - shift[:, 0],
            les.cy - phantom.BODY_CENTRE_PX[1] - shift[:, 1],
            self.key_z / (BODY_MM_PER_Z * sc.body_scale[pat]),
        )
        lines = []
        for i in range(len(c.patient)):
            volume = volume_name(int(c.patient[i]), int(c.study[i]), int(c.series[i]))
            name = f"{volume}_{c.key[i]:03d}"
            lines.append(
                f"{self.row_number[i]},{name}.png,{c.patient[i]:06d}_L{c.track_no[i]:03d},"
                f"{sc.tr_type[rt[i]]},{phantom.APPEARANCE_NAMES[self.code[rt[i]]]},"
                f"{phantom.LABEL_NAMES[organ[i]]},{les.cx[i]:.2f},{les.cy[i]:.2f},"
                f"{shift[i, 0]:.2f},{shift[i, 1]:.2f},{body[i, 0]:.5f},{body[i, 1]:.5f},"
                f"{sc.tr_loc[rt[i], 2]:.5f},"
                f"{self.key_z[i]:.2f},{self.cz[i]:.2f}\n"
            )
        return lines


def _write_volumes(state: ChunkImages, job: tuple[Path, list[int]], bar: Any) -> int:
    """Write the volumes ``job[1]`` (indices into ``state.slices``) of one patient."""
    images_dir, volumes = job
    written = 0
    for v in volumes:
        study, group, slices = state.slices[v]
        vol = state.volume(study, group)
        folder = images_dir / vol.name
        folder.mkdir(parents=True, exist_ok=True)
        for k in slices:
            img = state.render(vol, k)
            phantom.write_png16(folder / f"{k:03d}.png", img.hu, _PNG_LEVEL)
            written += 1
            if bar is not None:
                bar.update(1)
    return written


_JOB_STATE: Any = None  # what forked workers render from (inherited, never pickled)


def _job_in_worker(fn: Any, job: Any) -> int:
    return fn(_JOB_STATE, job, None)


def _run_jobs(state: Any, fn: Any, jobs: list, workers: int, bar: Any) -> int:
    """Sum of ``fn(state, job, bar)`` over jobs; in ``workers`` forked processes when > 1.

    Every file a job writes depends only on the seeds, so the output is the same whatever the
    number of workers or the order they finish in.
    """
    global _JOB_STATE
    if workers <= 1 or len(jobs) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return sum(fn(state, job, bar) for job in jobs)
    _JOB_STATE = state
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as pool:
            futures = [pool.submit(_job_in_worker, fn, job) for job in jobs]
            total = 0
            for done in as_completed(futures):
                n = done.result()
                total += n
                if bar is not None:
                    bar.update(n)
            return total
    finally:
        _JOB_STATE = None


def default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


TRUTH_HEADER = (
    "row_number,File_name,track_id,true_type,appearance,organ,center_x,center_y,"
    "shift_x,shift_y,body_x,body_y,body_z,center_z_mm,semi_z_mm\n"
)


def _ssbr_z(state: SimpleNamespace, v: int) -> tuple[float, float]:
    """First slice's z and the z span of SSBR volume v."""
    per_mm = BODY_MM_PER_Z * float(state.body_scale[v])
    span = (int(state.n_slices[v]) - 1) * state.slice_mm / per_mm
    lo, hi = _SSBR_Z_RANGE
    return lo + float(state.u_start[v]) * max(hi - lo - span, 0.0), span


def _write_ssbr_volume(state: SimpleNamespace, v: int, bar: Any) -> int:
    """Render and write the slices of SSBR volume v (at twice the matrix, averaged 2 x 2)."""
    seed, matrix = state.seed, state.matrix
    patient = state.first_index + v
    folder = state.out / volume_name(patient, 1, 1)
    folder.mkdir(parents=True, exist_ok=True)
    z0, span = _ssbr_z(state, v)
    n = int(state.n_slices[v])
    anat = state.anatomy.one(v)
    decor = phantom.Decor.build(anat, np.random.default_rng([seed, 12, patient]))
    look = phantom.StudyLook.draw(np.random.default_rng([seed, 13, patient]))
    for k in range(n):
        img = phantom.render_slice(
            anat,
            z0 + k * span / max(n - 1, 1),
            shape=(2 * matrix, 2 * matrix),
            step=512.0 / (2 * matrix),
            shift=(float(state.shift[v, 0]), float(state.shift[v, 1])),
            look=look,
            decor=decor,
            study_rng=np.random.default_rng([seed, 13, patient, 1]),
        )
        hu = img.hu.reshape(matrix, 2, matrix, 2).mean(axis=(1, 3))
        noise = np.random.default_rng([seed, 14, patient, k]).standard_normal(hu.shape)
        hu = hu + np.where(hu > -999.0, 10.0 * noise, 0.0)
        phantom.write_png16(folder / f"{k + 1:03d}.png", hu, _PNG_LEVEL)
        if bar is not None:
            bar.update(1)
    return n


def write_ssbr_volumes(
    out: Path,
    n: int,
    seed: int,
    first_index: int,
    matrix: int,
    slice_mm: float,
    bar: Any,
    workers: int,
) -> Path:
    """N unlabelled volumes of contiguous axial slices for body-part regression training."""
    rng = np.random.default_rng([seed, 11])
    male = rng.random(n) < P_MALE
    state = SimpleNamespace(
        out=out / SSBR_DIR,
        seed=seed,
        matrix=matrix,
        slice_mm=slice_mm,
        first_index=first_index,
        anatomy=Anatomy.draw(rng, male),
        body_scale=np.clip(rng.normal(1.0, 0.06, n), 0.85, 1.15),
        n_slices=rng.integers(40, 81, n),
        fov=np.where(
            rng.random(n) < P_COMMON_FOV,
            COMMON_FOV[pick(rng, np.cumsum(COMMON_FOV_P), n)],
            rng.integers(FOV_RANGE[0], FOV_RANGE[1] + 1, n),
        ),
        u_start=rng.random(n),
        shift=rng.normal(0.0, 4.0, (n, 2)),
    )
    volumes = []
    for v in range(n):
        name = volume_name(first_index + v, 1, 1)
        z0, span = _ssbr_z(state, v)
        volumes.append(
            {
                "volume": name,
                "slices": int(state.n_slices[v]),
                "z_first": round(z0, 6),
                "z_last": round(z0 + span, 6),
                "slice_spacing_mm": slice_mm,
                "pixel_spacing_mm": round(float(state.fov[v]) / matrix, 6),
                "matrix": [matrix, matrix],
            }
        )
    if bar is not None:
        bar.total = int(state.n_slices.sum())
        bar.refresh()
    _run_jobs(state, _write_ssbr_volume, list(range(n)), workers, bar)
    meta = {
        "synthetic": True,
        "generator": GENERATOR,
        "version": VERSION,
        "seed": seed,
        "volumes_dir": SSBR_DIR,
        "png": "16-bit grey, pixel = HU + 32768 (DeepLesion convention), slices numbered 001..",
        "z": "normalised body position (0 vertex .. 1 mid-thigh), as DeepLesion's location z; "
        "slice k (1-based) lies at z_first + (k - 1) * (z_last - z_first) / (slices - 1)",
        "note": (
            "SYNTHETIC CT phantom volumes, not real patients: unlabelled, for self-supervised "
            "body-part regression training."
        ),
        "volumes": volumes,
    }
    path = out / SSBR_METADATA_NAME
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="ascii")
    return path
