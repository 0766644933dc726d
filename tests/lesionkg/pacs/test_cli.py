"""``lesionkg orthanc`` and ``lesionkg etl --dicomweb`` on the command line, for real."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from lesionkg.cli import main
from lesionkg.pacs.cohort import write_pacs_cohort


def test_orthanc_start_status_env_stop(tmp_path):
    runner = CliRunner()
    data_dir = str(tmp_path / "orthanc")
    started = runner.invoke(main, ["orthanc", "start", "--data-dir", data_dir])
    assert started.exit_code == 0, started.output
    try:
        status = runner.invoke(
            main, ["orthanc", "status", "--data-dir", data_dir, "--format", "json"]
        )
        assert status.exit_code == 0 and json.loads(status.output)["running"] is True
        env = runner.invoke(main, ["orthanc", "env", "--data-dir", data_dir]).output
        assert "LESIONKG_DICOMWEB_URL=http://127.0.0.1:" in env
        assert (tmp_path / "orthanc" / "instance.json").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "orthanc" / "orthanc.json").stat().st_mode & 0o777 == 0o600
    finally:
        assert runner.invoke(main, ["orthanc", "stop", "--data-dir", data_dir]).exit_code == 0
    assert runner.invoke(main, ["orthanc", "status", "--data-dir", data_dir]).exit_code == 3


@pytest.mark.neo4j
def test_etl_dicomweb_imports_and_wrong_credentials_fail_once(
    empty_graph, pacs, store_in_pacs, cli_args, tmp_path, monkeypatch
):
    studies = write_pacs_cohort(tmp_path / "cohort", patients=2, studies=2, lesions=1)
    store_in_pacs([p for s in studies for p in [*s.ct, s.report] if p is not None])
    monkeypatch.setenv("LESIONKG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LESIONKG_DICOMWEB_USER", pacs.username)
    monkeypatch.setenv("LESIONKG_DICOMWEB_PASSWORD", pacs.password)
    runner = CliRunner()
    args = [*cli_args, "etl", "--dicomweb", pacs.dicomweb_url, "--format", "json"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["imported"], summary["bookmarks"], summary["requests"]["wado"]) == (4, 4, 8)

    monkeypatch.setenv("LESIONKG_DICOMWEB_PASSWORD", "wrong")
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    assert "refused the credentials (HTTP 401)" in result.output


@pytest.mark.neo4j
def test_etl_listen_receives_a_pushed_study(empty_graph, cli_args, tmp_path, monkeypatch):
    import threading
    import time

    import pydicom
    from pynetdicom import AE

    from lesionkg.db.server import free_port

    study = write_pacs_cohort(tmp_path / "cohort", patients=1, studies=1, lesions=2)[0]
    monkeypatch.setenv("LESIONKG_HOME", str(tmp_path / "home"))
    port = free_port()
    inbox = tmp_path / "inbox"
    args = [
        *cli_args,
        "etl",
        "--listen",
        "--port",
        str(port),
        "--watch",
        str(inbox),
        "--max-entries",
        "1",
        "--poll-s",
        "0.2",
        "--quiet",
        "--format",
        "json",
    ]
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(run=CliRunner().invoke(main, args)))
    thread.start()
    ae = AE(ae_title="TEST-SCU")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2")  # CT Image Storage
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.88.34")  # Comprehensive 3D SR
    deadline = time.monotonic() + 30
    assoc = ae.associate("127.0.0.1", port, ae_title="LESIONKG")
    while not assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.2)
        assoc = ae.associate("127.0.0.1", port, ae_title="LESIONKG")
    assert assoc.is_established
    for path in [*study.ct, study.report]:
        assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0x0000
    assoc.release()
    thread.join(60)
    run = result["run"]
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout.splitlines()[-1])["accepted"] == 2
