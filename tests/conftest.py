"""Shared fixtures: the real DeepLesion files and a real Neo4j server.

The server is LesionKG's own local Neo4j (the official Maven artifacts), started once per test
session in a temporary folder on a free port, or reused when ``LESIONKG_TEST_NEO4J_DIR`` names a
running instance (``.ci/run`` does that). A test that needs it and cannot get it fails: there is no
skip and no mock.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from lesionkg.config.settings import Settings
from lesionkg.db import server
from lesionkg.db.schema import apply_schema, counts, reset

REPO = Path(__file__).resolve().parents[1]
DEEPLESION = REPO.parent / "shared" / "data" / "deeplesion"
VAL_CSV = DEEPLESION / "dl_info" / "DL_info_val.csv"
TRAIN_CSV = DEEPLESION / "dl_info" / "DL_info_train_partial.csv"
DICOM = REPO.parent / "shared" / "data" / "dicom"
DATABASE = "neo4j"
MISSING_HINT = "(the tests read ../shared/data/deeplesion beside the checkout, in place)"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: the fixtures that start or use the real Neo4j; a test needing any of them, directly or through
#: other fixtures, is marked ``neo4j`` (so ``-m "not neo4j"`` never starts the server)
NEO4J_FIXTURES = frozenset({"neo4j_instance", "settings", "driver"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # fixturenames is the closure: every fixture the test needs, however indirectly.
        if NEO4J_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.neo4j)


@pytest.fixture(scope="session")
def deeplesion_dir() -> Path:
    if not DEEPLESION.is_dir():
        pytest.fail(f"the real DeepLesion data is missing: {DEEPLESION} {MISSING_HINT}")
    return DEEPLESION


@pytest.fixture(scope="session")
def dicom_dir() -> Path:
    """The real DICOM SR and CT test files (``../shared/data/dicom``), read in place."""
    if not DICOM.is_dir():
        pytest.fail(f"the real DICOM test files are missing: {DICOM} (read in place, beside main)")
    return DICOM


@pytest.fixture
def liver_multiframe(dicom_dir):
    """The three real liver CT slices as one Legacy Converted Enhanced CT (highdicom), unsaved:
    a multi-frame image for the frame-aware readers. A fresh dataset per test (tests change it)."""
    import warnings

    import highdicom as hd
    import pydicom
    from pydicom.uid import generate_uid

    slices = [pydicom.dcmread(dicom_dir / "ct" / "liver" / f"0{i}.dcm") for i in (1, 2, 3)]
    with warnings.catch_warnings():
        # The real slices' PatientName has one component, which highdicom warns about.
        warnings.simplefilter("ignore", UserWarning)
        return hd.legacy.LegacyConvertedEnhancedCTImage(
            legacy_datasets=slices,
            series_instance_uid=generate_uid(),
            series_number=900,
            sop_instance_uid=generate_uid(),
            instance_number=1,
        )


@pytest.fixture(scope="session")
def val_csv() -> Path:
    if not VAL_CSV.is_file():
        pytest.fail(f"the real DeepLesion data is missing: {VAL_CSV} {MISSING_HINT}")
    return VAL_CSV


@pytest.fixture(autouse=True)
def _image_store(tmp_path_factory, monkeypatch) -> None:
    """Key slices that imports store (``lesionkg.etl.image_store``) go to the session's temporary
    folder unless a test names a store, never to ``~/.lesionkg/images``."""
    import lesionkg.etl.preparation as preparation

    store = tmp_path_factory.getbasetemp() / "image_store"
    monkeypatch.setattr(preparation, "image_store_dir", lambda: store)


@pytest.fixture(scope="session")
def train_csv() -> Path:
    if not TRAIN_CSV.is_file():
        pytest.fail(f"the real DeepLesion data is missing: {TRAIN_CSV} {MISSING_HINT}")
    return TRAIN_CSV


@pytest.fixture(scope="session")
def synthetic_images(tmp_path_factory) -> Path:
    """12 SYNTHETIC patients in DeepLesion format with Images_png slices."""
    from lesionkg.synthetic.cohort import write_synthetic_dl_info

    out = tmp_path_factory.mktemp("synthetic_cohort")
    write_synthetic_dl_info(out, patients=12, seed=4, images=True)
    return out


@pytest.fixture(scope="session")
def true_types(synthetic_images) -> np.ndarray:
    """The generator's true coarse type of every row (train rows carry -1 in the CSV)."""
    with open(synthetic_images / "lesion_truth_synthetic.csv", newline="") as fh:
        return np.array([int(row["true_type"]) for row in csv.DictReader(fh)])


@pytest.fixture(scope="session")
def neo4j_instance(tmp_path_factory) -> server.Instance:
    named = os.environ.get("LESIONKG_TEST_NEO4J_DIR")
    data_dir = Path(named) if named else tmp_path_factory.mktemp("neo4j")
    port = int(os.environ.get("LESIONKG_TEST_NEO4J_PORT") or server.free_port())
    was_running = server.status(data_dir).running
    instance = server.start(data_dir, port, heap="1g", pagecache="256m")
    yield instance
    if not was_running:
        server.stop(data_dir)


@pytest.fixture(scope="session")
def settings(neo4j_instance) -> Settings:
    return Settings(neo4j_instance.uri, neo4j_instance.username, neo4j_instance.password, DATABASE)


@pytest.fixture(scope="session")
def driver(settings):
    from lesionkg.db.driver import open_driver

    drv = open_driver(settings)
    yield drv
    drv.close()


class GraphState:
    """What the single Community database holds now, so fixtures reload only when needed."""

    content: str | None = None


@pytest.fixture
def empty_graph(driver):
    """An empty database with the schema applied; the test may write anything."""
    reset(driver, DATABASE)
    apply_schema(driver, DATABASE)
    GraphState.content = "dirty"
    return driver


@pytest.fixture
def val_graph(driver, val_csv):
    """The database holding exactly the real validation split; tests must not write to it."""
    if GraphState.content != "val":
        from lesionkg.etl.bulk import load_deeplesion

        reset(driver, DATABASE)
        load_deeplesion(driver, val_csv, database=DATABASE, progress=False)
        GraphState.content = "val"
    assert counts(driver, DATABASE)["Lesion"] == 4889
    return driver


@pytest.fixture
def cli_args(settings) -> list[str]:
    """Global CLI options pointing ``lesionkg`` at the test server."""
    return ["--uri", settings.uri, "--user", settings.username, "--password", settings.password]


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """Where tests leave screenshots: ``$LESIONKG_TEST_ARTIFACTS``, else pytest's temporary folder
    of the session."""
    named = os.environ.get("LESIONKG_TEST_ARTIFACTS")
    folder = Path(named) if named else tmp_path_factory.mktemp("artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def headless_chromium(profile: Path):  # -> selenium.webdriver.Chrome (imported on use)
    """Debian's headless Chromium through its chromedriver, with a fresh profile in ``profile``:
    no first-run pages, no background traffic, a 1400 x 1000 window. A missing binary fails the
    test with the package to install (a browser test never skips)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).exists():
            pytest.fail(f"{binary} is missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
