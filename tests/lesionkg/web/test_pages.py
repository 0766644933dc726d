"""The explorer's pages in a real headless Chromium, against the real Neo4j holding the real
validation split (with its 23 real key slices) and a SYNTHETIC tracked cohort.

Each test saves a screenshot of its page; with LESIONKG_UPDATE_DOCS_IMAGES=1 the overview,
patient and lesion pages also go to docs/images/ for the README.
"""

from __future__ import annotations

import csv
import time

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from lesionkg.core.records import lesion_id_of
from lesionkg.db.queries import run_cypher

pytestmark = [pytest.mark.neo4j, pytest.mark.slow]
DB = "neo4j"
#: a real patient whose liver lesion was measured in studies 1, 2 and 3 (real key slices of 2, 3)
TRACKED_PATIENT = "000069"
#: the real key slice of that lesion's second measurement
REAL_SLICE = "000069_02_01_058.png"


def _real_row(val_csv, file_name: str) -> dict[str, str]:
    with open(val_csv, newline="") as fh:
        return next(r for r in csv.DictReader(fh) if r["File_name"] == file_name)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def _wait(browser, condition: str, timeout: float = 30.0):
    """Wait until the JavaScript expression ``condition`` is truthy; its value."""
    return WebDriverWait(browser, timeout).until(lambda d: d.execute_script(f"return {condition}"))


def _images_loaded(browser) -> None:
    _wait(
        browser,
        "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)",
    )


# Pixel statistics of a same-origin image, drawn on a canvas: grey spread and the count of the
# long axis' red pixels (255, 64, 64) and short axis' cyan ones (64, 200, 255).
PIXELS_JS = """
const img = document.getElementById(arguments[0]);
const c = document.createElement('canvas');
c.width = img.naturalWidth; c.height = img.naturalHeight;
const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
const d = ctx.getImageData(0, 0, c.width, c.height).data;
let red = 0, cyan = 0, n = 0, sum = 0, sum2 = 0;
for (let i = 0; i < d.length; i += 4) {
  const r = d[i], g = d[i + 1], b = d[i + 2];
  if (r > 200 && g < 100 && b < 100) red++;
  if (r < 100 && g > 150 && b > 200) cyan++;
  if (r === g && g === b) { n++; sum += r; sum2 += r * r; }
}
const mean = sum / n;
return {width: c.width, height: c.height, red: red, cyan: cyan,
        grey_std: Math.sqrt(sum2 / n - mean * mean)};
"""


def test_lesion_page_shows_real_values_and_a_decoded_slice_with_axes(
    explorer_graph, live_explorer, browser, screenshot, val_csv
):
    row = _real_row(val_csv, REAL_SLICE)
    lesion_id = lesion_id_of(REAL_SLICE, tuple(_floats(row["Measurement_coordinates"])))
    browser.get(f"{live_explorer.url}/lesion/{lesion_id}")
    assert browser.find_element(By.ID, "lesion-id").text == lesion_id

    def prop(name: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, f'tr[data-prop="{name}"] td:nth-child(2)').text

    # The values of DL_info_val.csv, as the page shows them.
    assert prop("file_name") == REAL_SLICE
    assert prop("key_slice") == row["Key_slice_index"]
    assert _floats(prop("bbox")) == pytest.approx(_floats(row["Bounding_boxes"]), abs=1e-3)
    assert _floats(prop("diameters_px")) == pytest.approx(
        _floats(row["Lesion_diameters_Pixel_"]), abs=1e-3
    )
    assert _floats(prop("window")) == _floats(row["DICOM_windows"])
    assert _floats(prop("spacing_mm")) == pytest.approx(_floats(row["Spacing_mm_px_"]))
    assert _floats(prop("location")) == pytest.approx(
        _floats(row["Normalized_lesion_location"]), abs=1e-5
    )
    assert prop("coarse_type_name") == "liver" and row["Coarse_lesion_type"] == "4"
    spacing = _floats(row["Spacing_mm_px_"])[0]
    long_px = _floats(row["Lesion_diameters_Pixel_"])[0]
    assert float(prop("long_axis_mm")) == pytest.approx(long_px * spacing, rel=1e-3)
    assert "mm" in browser.find_element(By.CSS_SELECTOR, 'tr[data-prop="long_axis_mm"]').text

    # The key slice: decoded at full resolution, not blank, both axes drawn.
    _images_loaded(browser)
    stats = browser.execute_script(PIXELS_JS, "key-slice")
    size = _floats(row["Image_size"])
    assert (stats["height"], stats["width"]) == (size[0], size[1])
    assert stats["grey_std"] > 20, stats
    assert stats["red"] >= 10 and stats["cyan"] >= 5, stats
    # Zoomable: a wheel turn over the viewer scales the image.
    browser.execute_script(
        "document.getElementById('viewer').dispatchEvent(new WheelEvent('wheel', "
        "{deltaY: -100, clientX: 200, clientY: 200, bubbles: true, cancelable: true}))"
    )
    assert float(_wait(browser, "document.getElementById('viewer').dataset.scale")) > 1.0
    browser.find_element(By.CSS_SELECTOR, '[data-zoom="fit"]').click()
    # For the screenshot, zoom 2x around the lesion (the fitted slice fills the 540 px viewer).
    box = _floats(row["Bounding_boxes"])
    x, y = (box[0] + box[2]) / 2 * 540 / size[1], (box[1] + box[3]) / 2 * 540 / size[0]
    for _ in range(4):
        browser.execute_script(
            "const v = document.getElementById('viewer'), r = v.getBoundingClientRect();"
            "v.dispatchEvent(new WheelEvent('wheel', {deltaY: -100, bubbles: true, "
            "cancelable: true, clientX: r.left + arguments[0], clientY: r.top + arguments[1]}))",
            x,
            y,
        )
    # Its track: the measurements of studies 1 and 3 are linked either side of this one.
    assert "study 1" in browser.find_element(By.ID, "track-previous").text
    assert "study 3" in browser.find_element(By.ID, "track-next").text
    screenshot(browser, "lesion", docs="explorer-lesion.png")


def test_similar_gallery_lists_other_patients_only(
    explorer_graph, live_explorer, browser, screenshot
):
    lesion_id = run_cypher(
        explorer_graph,
        DB,
        "MATCH (l:Lesion {file_name: $f}) RETURN l.lesion_id AS id",
        {"f": REAL_SLICE},
    ).rows[0][0]
    browser.get(f"{live_explorer.url}/lesion/{lesion_id}?space=cues&k=12")
    figures = browser.find_elements(By.CSS_SELECTOR, "#similar figure")
    assert len(figures) == 12
    assert all(f.get_attribute("data-patient") != TRACKED_PATIENT for f in figures)
    _images_loaded(browser)
    # The space selector: the triplet space has no embeddings in this graph, and says so.
    Select(browser.find_element(By.NAME, "space")).select_by_visible_text("triplet")
    browser.find_element(By.CSS_SELECTOR, "#similar-form button").click()
    _wait(browser, "document.getElementById('similar-error') !== null")
    assert "triplet" in browser.find_element(By.ID, "similar-error").text
    screenshot(browser, "lesion-triplet")


def test_patient_page_shows_growth_response_and_graph(
    explorer_graph, live_explorer, browser, screenshot
):
    browser.get(f"{live_explorer.url}/patient/{TRACKED_PATIENT}")
    assert browser.find_element(By.ID, "patient-id").text == TRACKED_PATIENT
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline .study")) == 4
    multi = browser.find_elements(By.CSS_SELECTOR, '.track[data-studies="3"]')
    assert len(multi) == 1
    assert len(multi[0].find_elements(By.CSS_SELECTOR, ".shots img")) == 3
    growth = multi[0].find_element(By.CSS_SELECTOR, ".growth svg")
    assert len(growth.find_elements(By.TAG_NAME, "circle")) == 3
    response = browser.find_element(By.CSS_SELECTOR, "#response-chart svg")
    labels = [t.text for t in response.find_elements(By.TAG_NAME, "text")]
    assert "BL" in labels and "SD" in labels
    assert "PD" in browser.find_element(By.ID, "response-table").text
    _wait(browser, "document.getElementById('patient-graph').dataset.ready === '1'")
    graph = browser.find_element(By.ID, "patient-graph")
    # patient, 4 studies, 4 lesions, and similar lesions of other patients
    assert int(graph.get_attribute("data-nodes")) > 9
    assert int(graph.get_attribute("data-edges")) >= 4 + 4 + 2
    assert browser.find_elements(By.CSS_SELECTOR, "#patient-graph canvas")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#similar-patients tbody tr")) == 10
    _images_loaded(browser)
    screenshot(browser, "patient", docs="explorer-patient.png")


def test_synthetic_patient_page(explorer_graph, live_explorer, browser, screenshot):
    patient = run_cypher(
        explorer_graph,
        DB,
        "MATCH (l:Lesion {dataset: 'synthetic'}) WHERE l.track_id IS NOT NULL "
        "WITH l.patient_id AS p, l.track_id AS t, count(DISTINCT l.study_index) AS n "
        "WHERE n >= 3 RETURN p ORDER BY n DESC, p LIMIT 1",
    ).rows[0][0]
    browser.get(f"{live_explorer.url}/patient/{patient}")
    assert browser.find_elements(By.CSS_SELECTOR, ".growth svg polyline")
    _images_loaded(browser)
    # Synthetic lesions all have slices: every thumbnail is a PNG, not a body map.
    sources = browser.execute_script(
        "return Array.from(document.querySelectorAll('#tracks img')).map(i => i.naturalWidth)"
    )
    assert sources and all(w == 128 for w in sources)
    screenshot(browser, "patient-synthetic")


def test_overview_counts_charts_and_cohort_filter(
    explorer_graph, live_explorer, browser, screenshot
):
    counts = run_cypher(
        explorer_graph,
        DB,
        "MATCH (l:Lesion) RETURN count(l) AS lesions, count(DISTINCT l.patient_id) AS patients",
    ).as_dicts()[0]
    browser.get(live_explorer.url + "/")
    assert int(browser.find_element(By.ID, "count-lesions").text) == counts["lesions"]
    assert int(browser.find_element(By.ID, "count-patients").text) == counts["patients"]
    assert browser.find_elements(By.CSS_SELECTOR, "#type-chart svg rect")
    assert browser.find_elements(By.CSS_SELECTOR, "#size-chart svg rect")
    _images_loaded(browser)
    screenshot(browser, "overview", docs="explorer-overview.png")

    Select(browser.find_element(By.NAME, "type")).select_by_visible_text("liver")
    browser.find_element(By.NAME, "min_mm").send_keys("50")
    browser.find_element(By.NAME, "z_min").send_keys("0.5")
    browser.find_element(By.CSS_SELECTOR, "#cohort-form button").click()
    _wait(browser, "location.search.includes('min_mm=50')")
    expected = run_cypher(
        explorer_graph,
        DB,
        "MATCH (l:Lesion) WHERE coalesce(l.coarse_type, l.predicted_type) = 4 "
        "AND l.long_axis_mm >= 50 AND l.location[2] >= 0.5 RETURN count(l) AS n",
    ).rows[0][0]
    assert expected > 0
    assert browser.find_element(By.ID, "cohort-total").text.startswith(f"{expected} lesions")
    rows = browser.find_elements(By.CSS_SELECTOR, "#cohort-table tbody tr")
    assert len(rows) == min(expected, 25)
    for r in rows:
        cells = r.find_elements(By.TAG_NAME, "td")
        assert cells[4].text.startswith("liver") and float(cells[5].text) >= 50
    _images_loaded(browser)
    screenshot(browser, "overview-cohort")


def test_search_finds_patients_and_lesions(explorer_graph, live_explorer, browser):
    browser.get(live_explorer.url + "/")
    box = browser.find_element(By.ID, "search")
    box.send_keys("69\n")
    _wait(browser, "location.pathname === '/patient/000069'")


def test_console_refuses_create_and_runs_named_queries(
    explorer_graph, live_explorer, browser, screenshot
):
    before = run_cypher(explorer_graph, DB, "MATCH (n) RETURN count(n) AS n").rows[0][0]
    browser.get(live_explorer.url + "/console")
    browser.find_element(By.ID, "cypher").send_keys("CREATE (:Intruder {name: 'x'}) RETURN 1")
    browser.find_element(By.ID, "run").click()
    _wait(browser, "document.getElementById('console-error') !== null")
    message = browser.find_element(By.ID, "console-error").text
    assert "refused" in message and "read-only" in message
    assert run_cypher(explorer_graph, DB, "MATCH (n) RETURN count(n) AS n").rows[0][0] == before
    screenshot(browser, "console-refused")

    # A named query as a form: type_distribution has no parameters, patient_tracks has one.
    browser.get(live_explorer.url + "/console")
    details = browser.find_element(By.XPATH, "//details[summary='patient_tracks']")
    details.find_element(By.TAG_NAME, "summary").click()
    details.find_element(By.NAME, "p.patient_id").send_keys(TRACKED_PATIENT)
    details.find_element(By.TAG_NAME, "button").click()
    _wait(browser, "document.getElementById('result-table') !== null")
    rows = browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")
    assert len(rows) == 2
    csv_url = browser.find_element(By.ID, "csv-download").get_attribute("href")
    body = httpx.get(csv_url, timeout=30)
    assert body.status_code == 200 and body.headers["content-type"].startswith("text/csv")
    assert body.text.splitlines()[0].startswith("track_id,type")
    assert len(body.text.splitlines()) == 3

    # Nodes and relationships come back as a graph as well as a table.
    browser.get(live_explorer.url + "/console")
    browser.find_element(By.ID, "cypher").send_keys(
        "MATCH path = (:Patient {patient_id: $p})-[:HAS_STUDY]->()-[:HAS_LESION]->() RETURN path"
    )
    browser.find_element(By.ID, "params").send_keys('{"p": "000069"}')
    browser.find_element(By.ID, "run").click()
    _wait(browser, "document.getElementById('result-graph')?.dataset.ready === '1'")
    graph = browser.find_element(By.ID, "result-graph")
    assert int(graph.get_attribute("data-nodes")) == 1 + 4 + 4
    assert int(graph.get_attribute("data-edges")) == 8
    screenshot(browser, "console")


def test_unknown_ids_give_404_pages_and_bad_parameters_400(
    explorer_graph, live_explorer, browser, screenshot
):
    browser.get(live_explorer.url + "/lesion/DL-0000000000000000")
    assert browser.find_element(By.ID, "error-status").text.startswith("404")
    screenshot(browser, "not-found")
    assert httpx.get(live_explorer.url + "/patient/999999").status_code == 404
    assert httpx.get(live_explorer.url + "/image/DL-0000000000000000/thumb").status_code == 404
    assert httpx.get(live_explorer.url + "/no/such/page").status_code == 404
    bad = httpx.get(live_explorer.url + f"/patient/{TRACKED_PATIENT}?space=pixels")
    assert bad.status_code == 400 and "space" in bad.text
    bad = httpx.get(live_explorer.url + "/?min_mm=lots")
    assert bad.status_code == 400 and "min_mm" in bad.text and "Traceback" not in bad.text
    bad = httpx.get(live_explorer.url + "/api/cohort?x_min=2")
    assert bad.status_code == 400 and bad.json()["fields"] == ["x_min"]
    # Path tricks never reach the file system: the id is checked, then looked up in the graph.
    for path in ("/image/..%2F..%2Fetc%2Fpasswd/full", "/image/%2Fetc%2Fpasswd/thumb"):
        assert httpx.get(live_explorer.url + path).status_code in (400, 404)


def test_cached_thumbnail_is_served_fast(explorer_graph, live_explorer, picture_cache):
    lesion_id = run_cypher(
        explorer_graph,
        DB,
        "MATCH (l:Lesion {file_name: $f}) RETURN l.lesion_id AS id",
        {"f": REAL_SLICE},
    ).rows[0][0]
    url = f"{live_explorer.url}/image/{lesion_id}/thumb"
    with httpx.Client() as client:
        first = client.get(url)
        assert first.status_code == 200 and first.headers["content-type"] == "image/png"
        assert first.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert list(picture_cache.rglob("*-thumb.png"))
        times = []
        for _ in range(20):
            start = time.perf_counter()
            again = client.get(url)
            times.append(time.perf_counter() - start)
            assert again.content == first.content
    times.sort()
    assert times[len(times) // 2] < 0.020, times
