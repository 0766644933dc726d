"""``lesionkg demo``, through click's CliRunner, against the real test server."""

import json

import pytest
from click.testing import CliRunner

from lesionkg.cli import main


@pytest.mark.slow
def test_demo_builds_a_synthetic_knowledge_base(empty_graph, cli_args, tmp_path, monkeypatch):
    from lesionkg import demo as pipeline

    runner = CliRunner()
    # The demo's training, shrunk to seconds: what is tested is that it trains, embeds, shows.
    tiny = pipeline.DemoTraining(steps=2, sequences_per_batch=2, crop_px=16, spacings_mm=(2.0, 5.0))
    monkeypatch.setattr(pipeline, "DEMO_TRAINING", tiny)
    args = [*cli_args, "demo", "--out", str(tmp_path / "demo"), "--patients", "30"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC demo cohort" in result.output
    assert "== Lesions per coarse type" in result.output
    assert "== Timeline of patient 9" in result.output
    assert "Triplet network: 2 steps" in result.output
    assert "Type precision@5" in result.output or "Too few held-out" in result.output
    assert "== Lesions of other patients most similar to DL-" in result.output
    assert "Linked" in result.output and "in the cues space (6-D)" in result.output
    assert "in the triplet space (1408-D)" in result.output
    assert "Tracks against the generator's true tracks" in result.output
    assert "== Tracks of patient 9" in result.output
    assert "== RECIST-style response of patient 9" in result.output
    assert "== Patients most similar to 9" in result.output
    assert "== New PACS bookmarks, a SYNTHETIC export" in result.output
    pacs = json.loads((tmp_path / "demo" / "pacs-export" / "SYNTHETIC.json").read_text())
    assert f"bookmarks: {pacs['bookmarks']} accepted" in result.output
    graph = "MATCH (l:Lesion) RETURN count(l.track_id) AS tracked, count(l) AS n, "
    graph += "COUNT { ()-[:SIMILAR_TO {space: 'cues'}]->() } AS cues_edges"
    first = empty_graph.execute_query(graph).records[0]
    assert first["tracked"] == first["n"] and first["cues_edges"] == 10 * first["n"]
    records, _, _ = empty_graph.execute_query(
        "MATCH (l:Lesion) RETURN collect(DISTINCT l.dataset) AS ds, count(l) AS n, "
        "count(l.embedding) AS embedded"
    )
    assert records[0]["ds"] == ["synthetic"] and records[0]["n"] > 20
    # Every synthetic lesion has its slice, so every one is embedded.
    assert records[0]["embedded"] == records[0]["n"]
    meta = json.loads((tmp_path / "demo" / "DL_info_synthetic.json").read_text())
    assert meta["synthetic"] is True
    assert meta["lesions"] + pacs["bookmarks"] == records[0]["n"]
    # Again: the earlier demo cohort is replaced, the model found, not retrained.
    again = runner.invoke(main, args)
    assert again.exit_code == 0, again.output
    records, _, _ = empty_graph.execute_query("MATCH (l:Lesion) RETURN count(l) AS n")
    assert records[0]["n"] == meta["lesions"] + pacs["bookmarks"]
    # ... and its edges and tracks are replaced, not duplicated
    assert dict(empty_graph.execute_query(graph).records[0]) == dict(first)
