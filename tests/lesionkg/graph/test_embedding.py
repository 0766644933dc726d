"""Embedding the graph's lesions with a checkpoint, on the real Neo4j."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lesionkg.cli import main
from lesionkg.core.errors import ModelError
from lesionkg.db.queries import run_named
from lesionkg.etl.bulk import load_deeplesion
from lesionkg.graph.embedding import embed_graph, read_embeddings
from lesionkg.model.checkpoint import save_checkpoint
from lesionkg.model.embedder import KIND
from lesionkg.model.network import LesionEmbedder
from lesionkg.model.training import TrainConfig
from lesionkg.model.transforms import CropSpec, InputConfig

DATABASE = "neo4j"


def _model(path: Path, seed: int) -> str:
    """An untrained checkpoint with small crops (what is written does not depend on training)."""
    torch.manual_seed(seed)
    config = TrainConfig(input=InputConfig((CropSpec(16, 2.0), CropSpec(16, 5.0, "crop"))))
    net = LesionEmbedder(config.network)
    return save_checkpoint(path, KIND, config.to_json(), {"network": net.state_dict()}, {})


def _images_without(cohort: Path, target: Path, missing: set[str]) -> Path:
    """A folder of links to the cohort's key slices, minus those of ``missing`` file names."""
    for png in (cohort / "Images_png").rglob("*.png"):
        name = f"{png.parent.name}_{png.name}"
        if name in missing:
            continue
        link = target / "Images_png" / png.parent.name / png.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(png)
    return target


def _graph(driver) -> dict[str, dict]:
    records, _, _ = driver.execute_query(
        "MATCH (l:Lesion) RETURN l.lesion_id AS id, l.file_name AS file_name, "
        "l.embedding AS embedding, l.embedding_model AS model, l.embedding_dim AS dim, "
        "l.patient_id AS patient",
        database_=DATABASE,
    )
    return {r["id"]: dict(r) for r in records}


@pytest.mark.neo4j
def test_embed_writes_exactly_the_lesions_with_images(empty_graph, synthetic_images, tmp_path):
    csv_path = synthetic_images / "DL_info_synthetic.csv"
    load_deeplesion(empty_graph, csv_path, database=DATABASE, progress=False)
    names = sorted({v["file_name"] for v in _graph(empty_graph).values()})
    missing = set(names[::4])
    images = _images_without(synthetic_images, tmp_path / "images", missing)
    sha = _model(tmp_path / "model", seed=0)

    summary = embed_graph(
        empty_graph, tmp_path / "model", database=DATABASE, images=images, progress=False
    )
    lesions = _graph(empty_graph)
    with_image = {i for i, v in lesions.items() if v["file_name"] not in missing}
    embedded = {i for i, v in lesions.items() if v["embedding"] is not None}
    assert embedded == with_image and 0 < len(embedded) < len(lesions)
    assert summary.embedded == len(embedded) and summary.without_image == len(lesions) - len(
        embedded
    )
    assert summary.model_sha256 == sha
    for i in embedded:
        vector = np.array(lesions[i]["embedding"])
        assert vector.shape == (1408,) and lesions[i]["dim"] == 1408
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
        assert lesions[i]["model"] == sha

    matrix = np.load(tmp_path / "model" / "embeddings.npy")
    manifest = json.loads((tmp_path / "model" / "embeddings.json").read_text())
    assert manifest["model_sha256"] == sha and manifest["space"] == "triplet"
    assert manifest["count"] == len(embedded) == matrix.shape[0] and manifest["dim"] == 1408
    for row, lesion_id in zip(matrix, manifest["ids"], strict=True):
        np.testing.assert_allclose(row, lesions[lesion_id]["embedding"], rtol=1e-6)
    read = read_embeddings(empty_graph, DATABASE)
    assert set(read.ids) == embedded and read.vectors.shape == (len(embedded), 1408)

    # The named query ranks other patients' lesions by cosine similarity, as NumPy does.
    query = sorted(embedded)[0]
    found = run_named(
        empty_graph, DATABASE, "similar_by_embedding", {"lesion_id": query, "k": "4"}
    ).as_dicts()
    patient = {i: v["patient"] for i, v in lesions.items()}
    others = [i for i in sorted(embedded) if patient[i] != patient[query]]
    cosine = {
        i: float(np.dot(lesions[i]["embedding"], lesions[query]["embedding"])) for i in others
    }
    expected = sorted(others, key=lambda i: -cosine[i])[:4]
    assert [r["lesion_id"] for r in found] == expected
    # Neo4j's vector.similarity.cosine is normalised to [0, 1]: (1 + cosine) / 2.
    assert [r["similarity"] for r in found] == pytest.approx(
        [(1 + cosine[i]) / 2 for i in expected], abs=1e-4
    )

    # Again: the same vectors, nothing else changes.
    embed_graph(empty_graph, tmp_path / "model", database=DATABASE, images=images, progress=False)
    assert _graph(empty_graph) == lesions

    # Another model, fewer images: lesions it cannot embed lose the old model's vectors.
    fewer = _images_without(synthetic_images, tmp_path / "fewer", set(names[::2]))
    other = _model(tmp_path / "other", seed=1)
    second = embed_graph(
        empty_graph, tmp_path / "other", database=DATABASE, images=fewer, progress=False
    )
    after = _graph(empty_graph)
    assert {v["model"] for v in after.values() if v["embedding"] is not None} == {other}
    assert second.stale_removed == len(embedded) - second.embedded


@pytest.mark.neo4j
def test_cli_embed(empty_graph, synthetic_images, cli_args, tmp_path):
    load_deeplesion(
        empty_graph,
        synthetic_images / "DL_info_synthetic.csv",
        database=DATABASE,
        images=synthetic_images,
        progress=False,
    )
    _model(tmp_path / "model", seed=0)
    args = [*cli_args, "embed", "--model", str(tmp_path / "model"), "--device", "cpu"]
    result = CliRunner().invoke(main, [*args, "--format", "json", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # Loaded with --images: the stored image paths are used, every lesion has one.
    assert summary["embedded"] == summary["lesions"] > 0 and summary["without_image"] == 0
    bad = CliRunner().invoke(main, [*cli_args, "embed", "--model", str(tmp_path)])
    assert bad.exit_code == 1 and "config.json: not found" in bad.output


def test_embedder_refuses_an_ssbr_checkpoint(tmp_path):
    from lesionkg.model.embedder import Embedder

    save_checkpoint(tmp_path, "ssbr", {}, {"network": {}}, {})
    with pytest.raises(ModelError, match="kind is 'ssbr', expected 'triplet'"):
        Embedder.load(tmp_path)
