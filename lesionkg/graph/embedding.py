"""Embedding the lesions of the graph with a trained triplet network.

``embed_graph`` reads every lesion's key slice (the stored ``image_path``, else ``File_name``
under an images folder), runs :class:`lesionkg.model.embedder.Embedder` in batches, and writes
``Lesion.embedding`` (LIST<FLOAT>, 1408 values, unit norm) with ``embedding_model`` (the
checkpoint's sha256), ``embedding_space`` (``"triplet"``) and ``embedding_dim``. The same vectors go
to a matrix file for the similarity index: ``NAME.npy`` (float32, rows in ``NAME.json``'s ``ids``
order) and ``NAME.json`` (space, dim, count, ids, model sha256).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lesionkg.db.driver import Driver, run_statement
from lesionkg.db.schema import apply_schema
from lesionkg.loaders.images import find_key_slice
from lesionkg.model.embedder import Embedder
from lesionkg.model.network import EMBEDDING_DIM
from lesionkg.model.transforms import LesionImage

SPACE = "triplet"
WRITE_BATCH = 500


@dataclass
class EmbedSummary:
    """What one ``embed`` run did."""

    model_sha256: str
    lesions: int = 0
    embedded: int = 0
    without_image: int = 0
    #: a few of the lesions without an image, for the message
    without_image_examples: list[str] = field(default_factory=list)
    #: lesions whose embedding from another model was removed (they have no image now)
    stale_removed: int = 0
    matrix_path: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict:
        rate = self.embedded / self.seconds if self.seconds > 0 else 0.0
        return {**asdict(self), "lesions_per_s": round(rate, 1)}

    def describe(self) -> str:
        return (
            f"embedded {self.embedded} of {self.lesions} lesions with model "
            f"{self.model_sha256[:12]} in {self.seconds:.1f} s; {self.without_image} without "
            f"image; matrix -> {self.matrix_path}"
        )


def _image_of(row: dict, images: Path | None) -> Path | None:
    stored = row.get("image_path")
    if stored and Path(stored).is_file():
        return Path(stored)
    if images is not None and row.get("file_name"):
        return find_key_slice(images, row["file_name"])
    return None


@dataclass(frozen=True)
class EmbeddedLesions:
    """Lesions of the graph with an embedding: ``vectors (N, D)``, ``types (N,)`` (-1 unknown),
    ``patients (N,)``, ``location (N, 3)`` normalised x, y, z."""

    ids: list[str]
    vectors: np.ndarray
    types: np.ndarray
    patients: np.ndarray
    location: np.ndarray


def read_embeddings(
    driver: Driver, database: str = "neo4j", *, split: str | None = None
) -> EmbeddedLesions:
    """The lesions with a ``triplet`` embedding (optionally of one split), in lesion id order."""
    rows = run_statement(
        driver,
        database,
        "graph/embedded_lesions",
        "reading embeddings",
        read=True,
        space=SPACE,
        split=split,
    )
    return EmbeddedLesions(
        ids=[r["lesion_id"] for r in rows],
        vectors=np.array([r["embedding"] for r in rows], dtype=np.float32).reshape(len(rows), -1),
        types=np.array(
            [-1 if r["coarse_type"] is None else r["coarse_type"] for r in rows], dtype=np.int64
        ),
        patients=np.array([r["patient_id"] for r in rows], dtype=object),
        location=np.array([r["location"] for r in rows], dtype=np.float64).reshape(-1, 3),
    )


def write_matrix(path: Path, ids: list[str], vectors: np.ndarray, model_sha256: str) -> Path:
    """Write ``vectors (N, D)`` as ``path`` (.npy) with a JSON manifest beside it; returns it."""
    path = Path(path).with_suffix(".npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {
        "space": SPACE,
        "dim": int(vectors.shape[1]),
        "count": len(ids),
        "model_sha256": model_sha256,
        "ids": ids,
    }
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, vectors.astype(np.float32))
    os.replace(tmp, path)
    side = path.with_suffix(".json")
    side.with_name(side.name + ".tmp").write_text(json.dumps(manifest) + "\n", encoding="utf-8")
    os.replace(side.with_name(side.name + ".tmp"), side)
    return path


def embed_graph(
    driver: Driver,
    model_dir: Path,
    *,
    database: str = "neo4j",
    images: Path | None = None,
    matrix: Path | None = None,
    batch_size: int = 32,
    device: str = "auto",
    progress: bool = True,
) -> EmbedSummary:
    """Embed every lesion of the graph that has an image; see the module docstring.

    ``matrix`` defaults to ``model_dir / "embeddings.npy"``. Lesions without an image are counted
    in the summary; an embedding another model gave them earlier is removed. Writes go in batches
    of ``WRITE_BATCH`` lesions; an interrupted run leaves whole vectors only, and running again
    completes it.
    """
    started = time.perf_counter()
    embedder = Embedder.load(model_dir, device=device)
    summary = EmbedSummary(model_sha256=embedder.sha256)
    rows = run_statement(driver, database, "graph/lesions_to_embed", "reading lesions", read=True)
    summary.lesions = len(rows)
    todo: list[LesionImage] = []
    for record in rows:
        row = dict(record)
        path = _image_of(row, images)
        if path is None or row.get("bbox") is None or row.get("spacing_mm") is None:
            summary.without_image += 1
            if len(summary.without_image_examples) < 5:
                summary.without_image_examples.append(row["lesion_id"])
            continue
        x1, y1, x2, y2 = (float(v) for v in row["bbox"])
        box = (x1, y1, x2, y2)
        spacing = (float(row["spacing_mm"][0]), float(row["spacing_mm"][1]))
        todo.append(LesionImage(row["lesion_id"], row["file_name"], path, box, spacing))

    bar = tqdm(total=len(todo), desc="embed", unit="lesion", disable=not progress)
    vectors = embedder.embed(todo, batch_size=batch_size, on_batch=bar.update)
    bar.close()
    ids = [lesion.lesion_id for lesion in todo]
    if todo:
        apply_schema(driver, database)
        for start in range(0, len(todo), WRITE_BATCH):
            batch = [
                {"lesion_id": i, "embedding": v.tolist()}
                for i, v in zip(
                    ids[start : start + WRITE_BATCH],
                    vectors[start : start + WRITE_BATCH],
                    strict=True,
                )
            ]
            run_statement(
                driver,
                database,
                "graph/set_embeddings",
                "writing embeddings",
                rows=batch,
                model_sha256=embedder.sha256,
                space=SPACE,
                dim=EMBEDDING_DIM,
            )
    records = run_statement(
        driver,
        database,
        "graph/clear_stale_embeddings",
        "clearing embeddings of older models",
        space=SPACE,
        model_sha256=embedder.sha256,
    )
    summary.stale_removed = records[0]["removed"]
    summary.embedded = len(todo)
    target = matrix if matrix is not None else Path(model_dir) / "embeddings.npy"
    summary.matrix_path = str(write_matrix(target, ids, vectors, embedder.sha256))
    summary.seconds = time.perf_counter() - started
    return summary
