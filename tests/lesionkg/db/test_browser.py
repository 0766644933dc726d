"""Neo4j Browser on the local server, in a real headless Chromium, and the LesionKG guide.

The Browser is the one the local server serves itself (``org.neo4j.client:neo4j-browser`` on the
classpath, the HTTP connector on 127.0.0.1). The guide is played from a small HTTP server standing
in for the lesion explorer: the same route (``/guide/lesionkg.html``), content type and CORS
headers that ``lesionkg serve`` must give it.

Screenshots go to ``$LESIONKG_TEST_ARTIFACTS`` (default: pytest's temporary folder).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import headless_chromium

from lesionkg.db import server

REPO = Path(__file__).resolve().parents[3]
GUIDE_ROUTE = "/guide/lesionkg.html"
WAIT_S = 90

PATIENT_GRAPH = (
    "MATCH path = (:Patient {patient_id: '000002'})-[:HAS_STUDY]->(:Study)-[:HAS_LESION]->(l) "
    "RETURN path"
)


@pytest.fixture(scope="module")
def chrome(tmp_path_factory) -> Iterator:
    """Headless Chromium (Debian's chromium and chromedriver) with a fresh profile."""
    driver = headless_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture
def lesion_graph(empty_graph):
    """A small LesionKG graph: patient 000002 with three studies, a liver lesion tracked through
    all of them and a lung lesion through two, and patient 000005 whose lesions are the nearest
    (SIMILAR_TO, space cues) of 000002's liver lesions."""
    empty_graph.execute_query(
        """
        UNWIND $patients AS p
        CREATE (pt:Patient {patient_id: p.id, sex: p.sex, dataset: 'test'})
        WITH pt, p
        UNWIND p.lesions AS les
        MERGE (s:Study {study_id: p.id + '_0' + toString(les.study)})
          ON CREATE SET s.patient_id = p.id, s.study_index = les.study
        MERGE (pt)-[:HAS_STUDY]->(s)
        CREATE (s)-[:HAS_LESION]->(l:Lesion {
            lesion_id: les.id, patient_id: p.id, study_id: s.study_id, study_index: les.study,
            series_id: s.study_id + '_s1', coarse_type: les.type, long_axis_mm: les.mm,
            short_axis_mm: les.mm * 0.6, track_id: les.track, cues: les.cues, dataset: 'test'})
        WITH l, les
        MATCH (t:LesionType {code: les.type})
        SET l.coarse_type_name = t.name
        CREATE (l)-[:OF_TYPE]->(t)
        """,
        patients=[
            {
                "id": "000002",
                "sex": "F",
                "lesions": [
                    {"id": "DL-liver-1", "study": 1, "type": 4, "mm": 52.0, "track": "T-liver"},
                    {"id": "DL-liver-2", "study": 2, "type": 4, "mm": 61.5, "track": "T-liver"},
                    {"id": "DL-liver-3", "study": 3, "type": 4, "mm": 70.2, "track": "T-liver"},
                    {"id": "DL-lung-1", "study": 1, "type": 5, "mm": 14.0, "track": "T-lung"},
                    {"id": "DL-lung-2", "study": 2, "type": 5, "mm": 11.0, "track": "T-lung"},
                ],
            },
            {
                "id": "000005",
                "sex": "M",
                "lesions": [
                    {"id": "DL-other-liver", "study": 1, "type": 4, "mm": 48.0, "track": "T-o1"},
                    {"id": "DL-other-lung", "study": 1, "type": 5, "mm": 9.0, "track": "T-o2"},
                ],
            },
        ],
    )
    empty_graph.execute_query(
        """
        MATCH (l:Lesion)
        SET l.cues = [l.study_index * 0.01, CASE l.coarse_type WHEN 4 THEN 0.6 ELSE 0.3 END,
                      0.5, 0.0, log(l.long_axis_mm) * 0.01, log(l.short_axis_mm) * 0.01]
        WITH l ORDER BY l.lesion_id
        WITH l.track_id AS track, collect(l) AS ls
        UNWIND range(0, size(ls) - 2) AS i
        WITH ls[i] AS a, ls[i + 1] AS b
        CREATE (a)-[:FOLLOWED_BY {score: 0.9, same_study: false, by: 'matching'}]->(b)
        """
    )
    empty_graph.execute_query(
        """
        MATCH (a:Lesion {patient_id: '000002'}), (b:Lesion {patient_id: '000005'})
        WHERE a.coarse_type = b.coarse_type
        CREATE (a)-[:SIMILAR_TO {space: 'cues', distance: 0.01, rank: 1, producer: 'cues-v1'}]->(b)
        """
    )
    return empty_graph


# --- driving the Browser ------------------------------------------------------------------------


def _wait(chrome, condition, what: str, timeout_s: float = WAIT_S):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(chrome, timeout_s).until(condition)
    except TimeoutException:
        body = chrome.find_element("tag name", "body").text[-2000:]
        pytest.fail(f"Neo4j Browser: {what} did not happen in {timeout_s:.0f} s; page:\n{body}")


def _text(chrome) -> str:
    return chrome.find_element("tag name", "body").text


def _connect(chrome, instance) -> None:
    """Open the Browser and connect with the instance's generated password (unless the Browser
    reconnected by itself with the credentials it kept from an earlier test)."""
    from selenium.webdriver.common.by import By

    connected = f"You are connected as user {instance.username}"
    chrome.get(instance.browser_url)
    _wait(
        chrome,
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, "[data-testid=boltaddress]") or connected in _text(d)
        ),
        "the connect form",
    )
    forms = chrome.find_elements(By.CSS_SELECTOR, "[data-testid=boltaddress]")
    if not forms:
        return
    # the form is filled from the server's discovery document: the real Bolt port
    assert forms[0].get_attribute("value") == f"127.0.0.1:{instance.port}"
    chrome.find_element(By.CSS_SELECTOR, "[data-testid=username]").send_keys(instance.username)
    chrome.find_element(By.CSS_SELECTOR, "[data-testid=password]").send_keys(instance.password)
    chrome.find_element(By.CSS_SELECTOR, "[data-testid=connect]").click()
    _wait(chrome, lambda d: connected in _text(d), "connecting")


def _run(chrome, command: str | None = None) -> None:
    """Type ``command`` into the editor (or keep what is there) and run it."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    if command is not None:
        chrome.find_element(By.CSS_SELECTOR, "[data-testid=activeEditor]").click()
        ActionChains(chrome).send_keys(command).perform()
    chrome.find_element(By.CSS_SELECTOR, "[data-testid=editor-Run]").click()


def _graph_nodes(chrome, cypher_prefix: str) -> int:
    """Nodes drawn in the graph view of the newest frame whose command starts with the prefix."""
    return int(
        chrome.execute_script(
            """
            for (const frame of document.querySelectorAll('[data-testid=frame]')) {
              const cmd = frame.querySelector('[data-testid=frameCommand]');
              if (cmd && cmd.textContent.replace(/\\s+/g, ' ').includes(arguments[0])) {
                return frame.querySelectorAll('svg.neod3viz g.node').length;
              }
            }
            return 0;
            """,
            cypher_prefix,
        )
    )


def _screenshot(chrome, artifacts: Path, name: str) -> None:
    """Save a screenshot as a test artifact; with LESIONKG_UPDATE_DOCS_IMAGES=1 also as the
    README's picture in docs/images/."""
    shot = artifacts / name
    chrome.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("LESIONKG_UPDATE_DOCS_IMAGES"):
        (REPO / "docs" / "images").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, REPO / "docs" / "images" / name)


def _expected_nodes(driver, query: str) -> int:
    records, _, _ = driver.execute_query(
        f"CALL () {{ {query} }} UNWIND nodes(path) AS n RETURN count(DISTINCT n) AS n"
    )
    return int(records[0]["n"])


@pytest.mark.neo4j
def test_browser_connects_with_the_generated_password_and_draws_a_graph(
    neo4j_instance, lesion_graph, chrome, artifacts
):
    expected = _expected_nodes(lesion_graph, PATIENT_GRAPH)
    assert expected == 9  # the patient, 3 studies, 5 lesions
    _connect(chrome, neo4j_instance)
    _run(chrome, PATIENT_GRAPH)
    _wait(
        chrome,
        lambda d: _graph_nodes(d, "(:Patient {patient_id: '000002'})") == expected,
        f"a graph of {expected} nodes",
    )
    _screenshot(chrome, artifacts, "neo4j-browser.png")


# --- the LesionKG guide -------------------------------------------------------------------------


class _GuideHandler(BaseHTTPRequestHandler):
    """What the lesion explorer does for the guide: the HTML, and CORS for Neo4j Browser's fetch
    (it sends Cache-Control and Pragma headers, so the browser asks with OPTIONS first)."""

    requests: ClassVar[list[tuple[str, str]]] = []

    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "GET, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "cache-control, pragma")

    def do_OPTIONS(self) -> None:
        self.requests.append(("OPTIONS", self.path))
        self.send_response(204 if self.path == GUIDE_ROUTE else 404)
        self._cors()
        self.end_headers()

    def do_GET(self) -> None:
        self.requests.append(("GET", self.path))
        if self.path != GUIDE_ROUTE:
            self.send_error(404)
            return
        body = server.guide_html().encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self._cors()
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def guide_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _GuideHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}{GUIDE_ROUTE}"
    httpd.shutdown()
    thread.join()


class _Runnables(HTMLParser):
    """The text of every ``<pre class="... runnable">`` of the guide, and the slides' titles."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[str] = []
        self.titles: list[str] = []
        self._in: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if (tag == "pre" and "runnable" in classes) or tag == "h3":
            self._in, self._text = tag, []

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            text = "".join(self._text).strip()
            (self.queries if tag == "pre" else self.titles).append(text)
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self._text.append(data)


def _guide() -> _Runnables:
    parsed = _Runnables()
    parsed.feed(server.guide_html())
    return parsed


def test_the_guide_covers_the_schema_a_patient_a_track_and_similar_lesions():
    guide = _guide()
    titles = " | ".join(guide.titles)
    for topic in ("schema", "patient", "track", "Similar lesions"):
        assert topic in titles
    queries = "\n".join(guide.queries)
    for pattern in ("db.schema.visualization", "HAS_STUDY", "FOLLOWED_BY", "SIMILAR_TO"):
        assert pattern in queries
    assert len(guide.queries) >= 12


@pytest.mark.neo4j
def test_every_guide_query_reads_only_and_returns_rows(lesion_graph):
    params: dict[str, object] = {}
    ran = 0
    with lesion_graph.session(database="neo4j", default_access_mode="READ") as session:
        for query in _guide().queries:
            if query.startswith(":param"):
                name, value = query.removeprefix(":param").split("=>")
                params[name.strip()] = value.strip().strip("'")
                continue
            rows = session.execute_read(lambda tx, q=query: list(tx.run(q, params)))
            assert rows, f"no rows from the guide's query:\n{query}"
            ran += 1
    assert ran >= 12 and params == {"patient_id": "000002"}


@pytest.mark.neo4j
def test_the_guide_plays_from_the_explorer_address_and_its_queries_run(
    neo4j_instance, lesion_graph, chrome, guide_url, artifacts
):
    from selenium.webdriver.common.by import By

    _GuideHandler.requests.clear()
    _connect(chrome, neo4j_instance)
    # a host that is not allow-listed is refused (the Browser's own default list has localhost;
    # the server's replaces it) and never asked
    _run(chrome, f":play {guide_url.replace('127.0.0.1', 'localhost')}")
    _wait(chrome, lambda d: "No guide by that name." in _text(d), "refusing a guide from localhost")
    assert _GuideHandler.requests == []
    _run(chrome, f":play {guide_url}")
    _wait(chrome, lambda d: "A lesion knowledge base for radiology" in _text(d), "the guide")
    assert ("GET", GUIDE_ROUTE) in _GuideHandler.requests
    # page to the patient slide and click its first query: it goes into the editor
    query = next(q for q in _guide().queries if "count(s) AS studies" in q)

    def runnable(d):
        for pre in d.find_elements(By.CSS_SELECTOR, "pre.runnable"):
            if pre.is_displayed() and "count(s) AS studies" in pre.text:
                return pre
        nexts = [
            b
            for b in d.find_elements(By.CSS_SELECTOR, "[data-testid=nextSlide]")
            if b.is_displayed()
        ]
        if nexts:
            nexts[0].click()
        return None

    _wait(chrome, runnable, "the patient slide's query").click()
    editor = chrome.find_element(By.CSS_SELECTOR, "[data-testid=activeEditor]")
    _wait(chrome, lambda d: "count(s) AS studies" in editor.text, "the query in the editor")
    assert query.splitlines()[0] in editor.text.replace("\u00a0", " ")
    _run(chrome)
    expected = 1 + 3 + 5 + 2  # 000002, its studies, its lesions and their 2 lesion types
    _wait(
        chrome,
        lambda d: _graph_nodes(d, "count(s) AS studies") == expected,
        f"a graph of {expected} nodes from the guide's query",
    )
    _screenshot(chrome, artifacts, "neo4j-browser-guide.png")
