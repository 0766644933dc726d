"""Fixtures of the explorer tests: the knowledge base they read, a live explorer (uvicorn in a
thread) and a real headless Chromium driven by Selenium.

Screenshots go to ``$LESIONKG_TEST_ARTIFACTS`` (default: the session's temporary folder); with
LESIONKG_UPDATE_DOCS_IMAGES=1 the three main pages' screenshots are also copied to
``docs/images/`` for the README.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from conftest import DATABASE, REPO, GraphState, headless_chromium

from lesionkg.db.schema import apply_schema, reset
from lesionkg.etl.bulk import load_deeplesion
from lesionkg.graph.matching import match_graph
from lesionkg.graph.similarity import link_graph
from lesionkg.synthetic.cohort import write_synthetic_dl_info
from lesionkg.web.app import create_app
from lesionkg.web.state import ExplorerConfig

DOCS_IMAGES = REPO / "docs" / "images"

# The knowledge base: the real validation split with the 23 real key slices, plus a small
# SYNTHETIC cohort with slices and tracks (patients 900001.., clear of the real ids), cues
# SIMILAR_TO edges and tracks.
FIRST_SYNTHETIC_PATIENT = 900_001
SYNTHETIC_PATIENTS = 8


def write_cohort(out: Path) -> Path:
    """The SYNTHETIC cohort's folder (CSV and Images_png), written once per folder."""
    if not (out / "DL_info_synthetic.csv").is_file():
        write_synthetic_dl_info(
            out,
            patients=SYNTHETIC_PATIENTS,
            seed=13,
            first_patient_index=FIRST_SYNTHETIC_PATIENT,
            images=True,
            workers=1,
        )
    return out


def build(driver, database: str, val_csv: Path, images: Path, synthetic: Path, index_dir: Path):
    reset(driver, database)
    apply_schema(driver, database)
    load_deeplesion(driver, val_csv, database=database, images=images, progress=False)
    load_deeplesion(
        driver,
        synthetic / "DL_info_synthetic.csv",
        database=database,
        images=synthetic,
        progress=False,
    )
    link_graph(driver, space="cues", k=10, index_dir=index_dir, database=database, progress=False)
    match_graph(driver, database=database, progress=False)


@pytest.fixture(scope="session")
def synthetic_tracked(tmp_path_factory) -> Path:
    return write_cohort(tmp_path_factory.mktemp("web_synthetic"))


@pytest.fixture
def explorer_graph(driver, val_csv, deeplesion_dir, synthetic_tracked, tmp_path_factory):
    """The real validation split with its 23 real key slices and the SYNTHETIC tracked cohort,
    linked (cues) and matched; tests must not write to it."""
    if GraphState.content != "web":
        build(
            driver,
            DATABASE,
            val_csv,
            deeplesion_dir / "images",
            synthetic_tracked,
            tmp_path_factory.mktemp("web_index"),
        )
        GraphState.content = "web"
    return driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving an app in a thread, stopped at the end."""

    def __init__(self, app, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the explorer did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def picture_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pictures")


@pytest.fixture(scope="session")
def explorer_config(settings, deeplesion_dir, picture_cache) -> ExplorerConfig:
    return ExplorerConfig(
        settings=settings, images=(deeplesion_dir / "images",), cache_dir=picture_cache
    )


@pytest.fixture(scope="session")
def live_explorer(explorer_config) -> Iterator[LiveServer]:
    with LiveServer(create_app(explorer_config)) as live:
        yield live


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    drv = headless_chromium(tmp_path_factory.mktemp("chromium"))
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def _screenshot(browser, artifacts: Path, name: str, docs: str | None = None) -> Path:
    """Save the whole page (the window grown to its height) as ``NAME.png``; ``docs``: with
    LESIONKG_UPDATE_DOCS_IMAGES=1 also copy it to docs/images/ under that name (a test run never
    changes tracked files unasked)."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    # The window's height holds the browser's own bars too: add them, so nothing is cut.
    browser.set_window_size(1400, min(max(int(height) + 140, 800), 5000))
    time.sleep(0.3)
    path = artifacts / f"{name}.png"
    browser.save_screenshot(str(path))
    browser.set_window_size(1400, 1000)
    if docs is not None and os.environ.get("LESIONKG_UPDATE_DOCS_IMAGES"):
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / docs)
    return path


@pytest.fixture(scope="session")
def screenshot(artifacts):
    """``screenshot(browser, name, docs=None)``: save the page under the artifacts folder."""

    def shoot(browser, name: str, docs: str | None = None) -> Path:
        return _screenshot(browser, artifacts, name, docs)

    return shoot


@pytest.fixture(scope="session")
def serve():
    """``with serve(app, host) as live``: the app on a free port in a thread (``live.url``)."""
    return LiveServer
