"""The persisted HNSW index of one embedding space: :class:`LesionIndex` wraps an
``hnswlib.Index`` with the lesion ids, the metric and a checksum of what produced the vectors,
and saves both as ``PREFIX.bin`` + ``PREFIX.json``.

Processes share the saved files: saving takes an exclusive ``fcntl.flock`` on ``PREFIX.lock``
and loading a shared one, so a reader never sees a new index beside an old manifest, and
:meth:`LesionIndex.save_merged` (what imports use) reloads the saved index under the lock and
keeps the lesions another process saved meanwhile instead of overwriting them."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import hnswlib
import numpy as np

from lesionkg.core.errors import ConfigurationError
from lesionkg.core.similarity import (
    METRICS,
    MISSING,
    Metric,
    as_matrix,
    check_metric,
    exact_knn,
    recall_at_k,
)

log = logging.getLogger(__name__)

#: version of the ``PREFIX.json`` manifest written by :meth:`LesionIndex.save`
FORMAT_VERSION = 1

#: the ``ef`` values :meth:`LesionIndex.tune_ef` tries, smallest first
EF_CANDIDATES: tuple[int, ...] = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def _header_of(path: Path) -> dict[str, int]:
    """Element count, capacity and vector bytes from an hnswlib index file's fixed header.

    hnswlib (``HierarchicalNSW::saveIndex``) writes, little-endian: offsetLevel0, max_elements,
    cur_element_count, size_data_per_element, label_offset, offsetData (size_t each), maxlevel
    (int), enterpoint (uint32), maxM, maxM0, M (size_t), mult (double), ef_construction (size_t).
    ``load_index`` trusts the dimension given to the Python object, so a wrong one would read
    garbage without an error: the header is checked here first.
    """
    layout = "<6QiI3QdQ"
    size = struct.calcsize(layout)
    with open(path, "rb") as fh:
        head = fh.read(size)
    if len(head) < size:
        raise ConfigurationError(f"{path}: not an hnswlib index (file shorter than its header)")
    values = struct.unpack(layout, head)
    return {
        "max_elements": values[1],
        "count": values[2],
        "vector_bytes": values[4] - values[5],
        "M": values[10],
        "ef_construction": values[12],
    }


def _write_atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def index_lock(path_prefix: str | os.PathLike[str], *, exclusive: bool = True) -> Iterator[None]:
    """Hold the saved index's file lock (``PREFIX.lock``, created when missing): exclusive for
    load-modify-save, shared for a load. Blocks until it is free; released on exit."""
    prefix = Path(path_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(prefix.with_name(prefix.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class LesionIndex:
    """An HNSW index over the vectors of one embedding space, labelled by lesion id.

    Attributes: ``space`` (the embedding space's name, e.g. ``"triplet"`` or ``"cues"``),
    ``metric`` (``"cosine"`` or ``"l2"``, the hnswlib space), ``dim``, ``ids`` (lesion ids; the
    hnswlib label of ``ids[i]`` is ``i``), ``producer_sha256`` (checksum of what produced the
    vectors: a model checkpoint's sha256 or a cue-vector definition's version string), ``M``,
    ``ef_construction``, ``ef`` (the query-time beam width), and ``recall_at_10`` / ``tuning`` once
    :meth:`tune_ef` ran. ``vectors`` holds the stored vectors ``(count, dim)`` for exact search and
    rebuilds (for cosine they are only defined up to scale: after :meth:`load` they are the unit
    vectors hnswlib keeps).

    Build one with :meth:`build` or :meth:`load`.
    """

    def __init__(
        self,
        *,
        space: str,
        metric: Metric,
        dim: int,
        producer_sha256: str,
        index: hnswlib.Index,
        ids: list[str],
        vectors: np.ndarray,
        M: int,
        ef_construction: int,
        ef: int,
        threads: int | None = None,
        owns_vectors: bool = False,
    ) -> None:
        self.space = space
        self.metric = metric
        self.dim = dim
        self.producer_sha256 = producer_sha256
        self.M = M
        self.ef_construction = ef_construction
        self.ef = ef
        self.ids = ids
        self.recall_at_10: float | None = None
        #: what the last :meth:`tune_ef` measured: k, target, queries, ef, recall
        self.tuning: dict | None = None
        self._index = index
        self._threads = -1 if threads is None else threads
        self._label = {lesion_id: i for i, lesion_id in enumerate(ids)}
        # Rows [0, count) are the vectors; the buffer grows geometrically on add.
        self._store = vectors
        self._owns_store = owns_vectors

    # -- construction ---------------------------------------------------------------------------

    @staticmethod
    def _check_ids(ids: Sequence[str]) -> list[str]:
        ids = list(ids)
        if len(set(ids)) != len(ids):
            counts = Counter(ids)
            dupes = sorted(i for i, n in counts.items() if n > 1)
            shown = ", ".join(dupes[:5]) + (f" and {len(dupes) - 5} more" if len(dupes) > 5 else "")
            raise ValueError(f"duplicate lesion ids in the index input: {shown}")
        bad = next((i for i in ids if not isinstance(i, str) or not i), None)
        if bad is not None:
            raise ValueError(f"lesion ids must be non-empty strings, got {bad!r}")
        return ids

    @classmethod
    def build(
        cls,
        space: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        *,
        metric: Metric,
        producer_sha256: str,
        M: int = 16,
        ef_construction: int = 200,
        threads: int | None = None,
    ) -> LesionIndex:
        """Index ``vectors (N, D)`` float32, row ``i`` being lesion ``ids[i]``.

        ``threads`` defaults to every core. Duplicate ids, a shape that does not match ``ids``, or
        non-finite values raise ``ValueError``. ``vectors`` is kept by reference when it already is
        C-contiguous float32 (no copy of a large matrix): do not modify it afterwards.
        """
        check_metric(metric)
        if not space:
            raise ValueError("the embedding space needs a name (e.g. 'triplet' or 'cues')")
        ids = cls._check_ids(ids)
        arr = as_matrix(vectors, None, "vectors")
        if len(arr) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(arr)} vectors")
        dim = arr.shape[1]
        if dim == 0:
            raise ValueError("vectors must have at least one dimension")
        index = hnswlib.Index(space=metric, dim=dim)
        # hnswlib needs room for at least one element.
        index.init_index(max_elements=max(len(ids), 1), ef_construction=ef_construction, M=M)
        if threads is not None:
            index.set_num_threads(threads)
        if len(ids):
            index.add_items(
                arr, np.arange(len(ids)), num_threads=-1 if threads is None else threads
            )
        return cls(
            space=space,
            metric=metric,
            dim=dim,
            producer_sha256=producer_sha256,
            index=index,
            ids=ids,
            vectors=arr,
            M=M,
            ef_construction=ef_construction,
            # hnswlib's default until tune_ef picks one.
            ef=10,
            threads=threads,
        )

    @property
    def count(self) -> int:
        """Number of lesions in the index."""
        return len(self.ids)

    @property
    def vectors(self) -> np.ndarray:
        """The stored vectors ``(count, dim)`` float32, row ``i`` being ``ids[i]`` (a view)."""
        return self._store[: self.count]

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add lesions ``ids`` with ``vectors (n, dim)``; an id already present gets the new vector.

        hnswlib updates an existing label in place (``addPoint`` -> ``updatePoint`` repairs its
        links), so a replaced lesion keeps its position in ``ids``. The index grows as needed.
        """
        ids = self._check_ids(ids)
        arr = as_matrix(vectors, self.dim, "vectors")
        if len(arr) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(arr)} vectors")
        if not ids:
            return
        labels = np.empty(len(ids), dtype=np.int64)
        new = 0
        for j, lesion_id in enumerate(ids):
            label = self._label.get(lesion_id)
            if label is None:
                label = self.count + new
                new += 1
            labels[j] = label
        needed = self.count + new
        if needed > self._index.get_max_elements():
            # Geometric growth: n single adds cost O(n) copies in total, not O(n^2).
            self._index.resize_index(max(needed, 2 * self._index.get_max_elements()))
        if needed > len(self._store) or not self._owns_store:
            # The first write copies: build() may hold the caller's own array by reference.
            capacity = max(needed, 2 * len(self._store)) if needed > len(self._store) else needed
            grown = np.empty((capacity, self.dim), dtype=np.float32)
            grown[: self.count] = self.vectors
            self._store, self._owns_store = grown, True
        self._index.add_items(arr, labels, num_threads=self._threads)
        self._store[labels] = arr
        for j, lesion_id in enumerate(ids):
            if labels[j] >= len(self.ids):
                self.ids.append(lesion_id)
                self._label[lesion_id] = int(labels[j])
        # Any earlier tuning measured another set of vectors.
        self.recall_at_10 = None
        self.tuning = None

    def position(self, lesion_id: str) -> int | None:
        """Row of ``lesion_id`` in ``ids`` / ``vectors``, or None when it is not indexed."""
        return self._label.get(lesion_id)

    # -- search ---------------------------------------------------------------------------------

    def query(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The approximate ``k`` nearest lesions of every row of ``vectors (Q, dim)``.

        Returns ``positions (Q, k)`` int64 into ``ids``, and ``distances (Q, k)`` float32 in the
        index's metric (module docstring), nearest first. When ``k`` exceeds ``count`` the missing
        places hold -1 and ``inf``. Uses ``ef = max(self.ef, k)``: hnswlib needs ef >= k.
        """
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        arr = as_matrix(vectors, self.dim, "query vectors")
        positions = np.full((len(arr), k), MISSING, dtype=np.int64)
        distances = np.full((len(arr), k), np.inf, dtype=np.float32)
        k_eff = min(k, self.count)
        if k_eff == 0 or len(arr) == 0:
            return positions, distances
        self._index.set_ef(max(self.ef, k_eff))
        try:
            labels, dist = self._index.knn_query(arr, k=k_eff, num_threads=self._threads)
        except RuntimeError:
            # hnswlib refuses when some query reached fewer than k elements (possible on a tiny or
            # badly connected graph); exact search always answers.
            labels, dist = exact_knn(arr, self.vectors, k_eff, metric=self.metric)
        positions[:, :k_eff] = labels.astype(np.int64)
        distances[:, :k_eff] = dist
        return positions, distances

    def tune_ef(
        self,
        sample_queries: np.ndarray,
        k: int = 10,
        target_recall: float = 0.99,
        candidates: Sequence[int] = EF_CANDIDATES,
    ) -> tuple[int, float]:
        """Pick the smallest ``ef`` whose mean recall@k on ``sample_queries (Q, dim)`` reaches
        ``target_recall``, against :func:`exact_knn` on the stored vectors; set ``self.ef``.

        Returns ``(ef, recall)``. If no candidate reaches the target, the largest is kept with the
        recall it gave (the caller decides whether that is acceptable). Queries should come from
        the same distribution as the stored vectors; when they *are* stored vectors, each finds
        itself, which makes recall slightly optimistic.
        """
        if not candidates:
            raise ValueError("tune_ef needs at least one ef candidate")
        if not 0.0 < target_recall <= 1.0:
            raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
        arr = as_matrix(sample_queries, self.dim, "sample queries")
        k_eff = min(k, self.count)
        _, exact = exact_knn(arr, self.vectors, k_eff, metric=self.metric)
        chosen, recall = 0, 0.0
        for ef in sorted(set(candidates)):
            self.ef = ef
            _, found = self.query(arr, k_eff)
            recall = recall_at_k(found, exact)
            chosen = ef
            if recall >= target_recall:
                break
        self.ef = chosen
        self.tuning = {
            "k": k,
            "target_recall": target_recall,
            "queries": len(arr),
            "ef": chosen,
            "recall": round(recall, 5),
        }
        self.recall_at_10 = round(recall, 5) if k == 10 else None
        return chosen, recall

    # -- persistence ----------------------------------------------------------------------------

    def manifest(self) -> dict:
        """What :meth:`save` writes as ``PREFIX.json``."""
        return {
            "format_version": FORMAT_VERSION,
            "space": self.space,
            "metric": self.metric,
            "dim": self.dim,
            "count": self.count,
            "ids": self.ids,
            "producer_sha256": self.producer_sha256,
            "M": self.M,
            "ef_construction": self.ef_construction,
            "ef": self.ef,
            "recall_at_10": self.recall_at_10,
            "tuning": self.tuning,
        }

    def save(self, path_prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``PREFIX.bin`` (the hnswlib index) and ``PREFIX.json`` (the manifest).

        Each file is written to a temporary name and renamed into place. The index goes first, so
        a crash in between leaves a new index beside an old manifest, which :meth:`load` detects
        by their disagreeing counts (or reads consistently when nothing changed but ``ef``).
        """
        with index_lock(path_prefix):
            return self._save_unlocked(Path(path_prefix))

    def save_merged(self, path_prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Save, keeping what another process saved meanwhile: under the exclusive lock, the
        saved index is read again and its lesions missing here are added first (when it is of
        the same space, metric, dimension and producer; otherwise this one replaces it).

        So any number of processes that each add lesions and save end with an index holding all
        of them, whatever order they save in (a plain :meth:`save` is last-writer-wins).
        """
        prefix = Path(path_prefix)
        with index_lock(prefix):
            bin_path, json_path = _paths(prefix)
            if bin_path.is_file() and json_path.is_file():
                try:
                    saved: LesionIndex | None = LesionIndex._load_unlocked(prefix)
                except ConfigurationError as exc:
                    log.warning("%s: replacing an unreadable saved index (%s)", bin_path, exc)
                    saved = None
                if saved is not None and (
                    saved.space,
                    saved.metric,
                    saved.dim,
                    saved.producer_sha256,
                ) == (self.space, self.metric, self.dim, self.producer_sha256):
                    missing = [i for i, lid in enumerate(saved.ids) if self.position(lid) is None]
                    if missing:
                        self.add([saved.ids[i] for i in missing], saved.vectors[missing])
                        log.info(
                            "%s: kept %d lesions another process saved", bin_path, len(missing)
                        )
            return self._save_unlocked(prefix)

    def _save_unlocked(self, prefix: Path) -> tuple[Path, Path]:
        prefix.parent.mkdir(parents=True, exist_ok=True)
        bin_path, json_path = _paths(prefix)
        _write_atomic(bin_path, lambda tmp: self._index.save_index(str(tmp)))
        text = json.dumps(self.manifest()) + "\n"
        _write_atomic(json_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return bin_path, json_path

    @classmethod
    def load(
        cls, path_prefix: str | os.PathLike[str], *, threads: int | None = None
    ) -> LesionIndex:
        """Read an index written by :meth:`save`.

        Raises ``ConfigurationError`` naming the file when one is missing or unreadable, or when
        the manifest and the index file disagree (count, dimension, metric, M, ids). Holds the
        shared file lock while reading (a concurrent save is never read half-way).
        """
        with index_lock(path_prefix, exclusive=False):
            return cls._load_unlocked(Path(path_prefix), threads=threads)

    @classmethod
    def _load_unlocked(cls, prefix: Path, *, threads: int | None = None) -> LesionIndex:
        bin_path, json_path = _paths(prefix)
        for path in (json_path, bin_path):
            if not path.is_file():
                raise ConfigurationError(f"{path}: similarity index file not found")
        try:
            manifest = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"{json_path}: unreadable index manifest: {exc}") from exc
        m = _checked_manifest(manifest, json_path)
        header = _header_of(bin_path)

        def disagree(what: str, in_manifest, in_index) -> ConfigurationError:
            return ConfigurationError(
                f"{json_path} and {bin_path} disagree on {what}: the manifest says {in_manifest}, "
                f"the index file holds {in_index} (rebuild the index)"
            )

        if header["count"] != m["count"]:
            raise disagree("the number of vectors", m["count"], header["count"])
        if header["vector_bytes"] != 4 * m["dim"]:
            raise disagree("the dimension", m["dim"], f"{header['vector_bytes'] / 4:g}")
        if header["M"] != m["M"]:
            raise disagree("M", m["M"], header["M"])
        index = hnswlib.Index(space=m["metric"], dim=m["dim"])
        try:
            index.load_index(str(bin_path), max_elements=max(m["count"], 1))
        except RuntimeError as exc:
            raise ConfigurationError(f"{bin_path}: unreadable hnswlib index: {exc}") from exc
        if threads is not None:
            index.set_num_threads(threads)
        # hnswlib stores cosine vectors normalised: these are the unit vectors, fine for cosine.
        if m["count"]:
            vectors = np.asarray(index.get_items(np.arange(m["count"])), dtype=np.float32)
        else:
            vectors = np.empty((0, m["dim"]), dtype=np.float32)
        loaded = cls(
            space=m["space"],
            metric=m["metric"],
            dim=m["dim"],
            producer_sha256=m["producer_sha256"],
            index=index,
            ids=m["ids"],
            vectors=vectors.reshape(m["count"], m["dim"]),
            M=m["M"],
            ef_construction=m["ef_construction"],
            ef=m["ef"],
            threads=threads,
            owns_vectors=True,
        )
        loaded.recall_at_10 = manifest.get("recall_at_10")
        loaded.tuning = manifest.get("tuning")
        return loaded


def _paths(prefix: Path) -> tuple[Path, Path]:
    return prefix.with_name(prefix.name + ".bin"), prefix.with_name(prefix.name + ".json")


def _checked_manifest(manifest: object, path: Path) -> dict:
    """The manifest's fields, type-checked, or ``ConfigurationError`` naming what is wrong."""
    if not isinstance(manifest, dict):
        raise ConfigurationError(f"{path}: the index manifest must be a JSON object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ConfigurationError(
            f"{path}: unsupported index manifest format_version "
            f"{manifest.get('format_version')!r} (expected {FORMAT_VERSION})"
        )
    kinds = {
        "space": str,
        "metric": str,
        "dim": int,
        "count": int,
        "ids": list,
        "producer_sha256": str,
        "M": int,
        "ef_construction": int,
        "ef": int,
    }
    for field, kind in kinds.items():
        value = manifest.get(field)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigurationError(
                f"{path}: index manifest field {field!r} must be a {kind.__name__}, got {value!r}"
            )
    if manifest["metric"] not in METRICS:
        raise ConfigurationError(
            f"{path}: unknown metric {manifest['metric']!r} (expected one of {', '.join(METRICS)})"
        )
    if len(manifest["ids"]) != manifest["count"]:
        raise ConfigurationError(
            f"{path}: the manifest lists {len(manifest['ids'])} ids but count is "
            f"{manifest['count']}"
        )
    if not all(isinstance(i, str) and i for i in manifest["ids"]):
        raise ConfigurationError(f"{path}: the manifest's ids must be non-empty strings")
    if len(set(manifest["ids"])) != len(manifest["ids"]):
        raise ConfigurationError(f"{path}: the manifest lists duplicate lesion ids")
    if manifest["dim"] < 1:
        raise ConfigurationError(f"{path}: dim must be >= 1, got {manifest['dim']}")
    return manifest
