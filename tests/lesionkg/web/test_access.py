"""Safe by default: loopback without a token, any other bind only with one (then 401 without it),
a 503 page when Neo4j is down, and the JSON API with its OpenAPI schema."""

from __future__ import annotations

import socket

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from selenium.webdriver.common.by import By

from lesionkg.cli import main
from lesionkg.config.settings import Settings
from lesionkg.core.errors import ConfigurationError
from lesionkg.web.access import check_bind, read_token
from lesionkg.web.app import create_app
from lesionkg.web.state import ExplorerConfig

TOKEN = "test-token-0123456789abcdef"


def test_non_local_bind_needs_a_token(tmp_path):
    check_bind("127.0.0.1", None)
    with pytest.raises(ConfigurationError, match="without an access token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(ConfigurationError, match="at least 16"):
        read_token(None, {"LESIONKG_WEB_TOKEN": "short"})
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert read_token(token_file, {}) == TOKEN
    assert read_token(None, {"LESIONKG_WEB_TOKEN": TOKEN}) == TOKEN


def test_serve_refuses_to_start_on_another_host_without_token(monkeypatch):
    port = 18_765  # never bound: the command refuses first
    monkeypatch.delenv("LESIONKG_WEB_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", str(port)])
    assert result.exit_code == 1
    assert "refusing to listen on 0.0.0.0 without an access token" in result.output


@pytest.mark.neo4j
def test_with_a_token_every_request_needs_it(
    explorer_graph, explorer_config, browser, screenshot, serve
):
    config = ExplorerConfig(
        settings=explorer_config.settings,
        images=explorer_config.images,
        cache_dir=explorer_config.cache_dir,
        token=TOKEN,
    )
    with serve(create_app(config), host="0.0.0.0") as live:
        base = f"http://127.0.0.1:{live.port}"
        for path in (
            "/",
            "/patient/000069",
            "/console",
            "/api/overview",
            "/static/style.css",
            "/image/DL-0000000000000000/thumb",
            "/api/openapi.json",
        ):
            assert httpx.get(base + path).status_code == 401, path
            wrong = httpx.get(base + path, headers={"Authorization": "Bearer wrong-token-000000"})
            assert wrong.status_code == 401, path
        ok = httpx.get(base + "/api/overview", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["lesions"] > 4889
        # A browser opens it once with ?token=, then carries the cookie; the token leaves the URL.
        browser.get(f"{base}/?token={TOKEN}")
        assert "token" not in browser.current_url
        assert browser.find_element(By.ID, "count-lesions").text
        browser.get(base + "/patient/000069")
        assert browser.find_element(By.ID, "patient-id").text == "000069"
        browser.delete_all_cookies()
        browser.get(base + "/")
        assert "401" in browser.find_element(By.TAG_NAME, "body").text
        screenshot(browser, "unauthorized")


def test_neo4j_down_gives_503_pages_never_a_trace(tmp_path):
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = Settings(f"bolt://127.0.0.1:{port}", "neo4j", "nothing-listens-here")
    app = create_app(ExplorerConfig(settings=down, cache_dir=tmp_path))
    with TestClient(app, raise_server_exceptions=False) as client:
        page = client.get("/patient/000069")
        assert page.status_code == 503
        assert "Neo4j is unavailable" in page.text and "Traceback" not in page.text
        api = client.get("/api/overview")
        assert api.status_code == 503 and api.json()["error"] == "Neo4j is unavailable"
        # Pages that need no database still work.
        assert client.get("/static/style.css").status_code == 200


@pytest.mark.neo4j
def test_json_api_and_openapi(explorer_graph, explorer_config):
    with TestClient(create_app(explorer_config)) as client:
        schema = client.get("/api/openapi.json").json()
        for path in (
            "/api/overview",
            "/api/cohort",
            "/api/patients/{patient_id}",
            "/api/lesions/{lesion_id}",
            "/api/lesions/{lesion_id}/similar",
            "/api/queries",
            "/api/cypher",
        ):
            assert path in schema["paths"], path
        assert client.get("/docs").status_code == 404  # no CDN-backed Swagger page
        guide = client.get("/guide/lesionkg.html")
        assert guide.status_code == 200 and "MATCH" in guide.text
        assert guide.headers["access-control-allow-origin"] == "*"
        patient = client.get("/api/patients/000069").json()
        assert len(patient["studies"]) == 4
        assert patient["response"]["studies"][0]["category"] == "SD"
        lesion_id = patient["tracks"][0]["lesion_ids"][1]
        lesion = client.get(f"/api/lesions/{lesion_id}").json()
        assert lesion["lesion"]["file_name"] == "000069_02_01_058.png" and lesion["has_image"]
        similar = client.get(f"/api/lesions/{lesion_id}/similar?k=5&type=liver").json()
        assert len(similar["lesions"]) == 5
        assert all(r["patient_id"] != "000069" and r["type"] == "liver" for r in similar["lesions"])
        cohort = client.get("/api/cohort?type=lung&min_studies=3&per_page=5").json()
        assert cohort["total"] > 0 and len(cohort["lesions"]) == 5
        named = client.get("/api/queries/patient_tracks?p.patient_id=000069").json()
        assert len(named["rows"]) == 2
        refused = client.post("/api/cypher", json={"query": "MATCH (n) DETACH DELETE n"})
        assert refused.status_code == 400 and "read-only" in refused.json()["detail"]
        rows = client.post(
            "/api/cypher",
            json={
                "query": "MATCH (p:Patient {patient_id: $id}) RETURN p",
                "params": {"id": "000069"},
            },
        ).json()
        assert rows["rows"][0]["p"]["patient_id"] == "000069" and len(rows["nodes"]) == 1
        assert client.get("/api/lesions/DL-0000000000000000").status_code == 404
        bad = client.get("/api/lesions/x/similar?k=0")
        assert bad.status_code == 400 and bad.json()["fields"] == ["k"]
