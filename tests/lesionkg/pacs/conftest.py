"""A real local Orthanc for the PACS tests: started once per session on free ports, emptied by
the tests that need an empty PACS, stopped at the end. There is no mock and no skip: a machine
without Orthanc fails these tests (``apt-get install orthanc orthanc-dicomweb``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from lesionkg.pacs import orthanc
from lesionkg.pacs.client import PacsClient, PacsConnection, PacsRetry


@pytest.fixture(scope="session")
def orthanc_instance(tmp_path_factory) -> orthanc.OrthancInstance:
    data_dir = tmp_path_factory.mktemp("orthanc")
    instance = orthanc.start(data_dir)
    yield instance
    orthanc.stop(data_dir)


def connection_of(instance: orthanc.OrthancInstance) -> PacsConnection:
    return PacsConnection(instance.dicomweb_url, instance.username, instance.password)


def clear_pacs(instance: orthanc.OrthancInstance) -> None:
    """Delete every study from the Orthanc (REST API)."""
    studies = requests.get(f"{instance.url}/studies", auth=instance.auth, timeout=30).json()
    for study in studies:
        requests.delete(f"{instance.url}/studies/{study}", auth=instance.auth, timeout=30)


def store(instance: orthanc.OrthancInstance, paths: list[Path]) -> None:
    """Store files in the Orthanc over STOW-RS."""
    client = PacsClient(connection_of(instance), PacsRetry(give_up_after_s=30))
    client.store_files(sorted(paths))


@pytest.fixture
def pacs(orthanc_instance) -> orthanc.OrthancInstance:
    """The session's Orthanc, running (restarted if a test stopped it) and empty."""
    if not orthanc.status(orthanc_instance.data_dir).running:
        orthanc.start(orthanc_instance.data_dir)
    clear_pacs(orthanc_instance)
    return orthanc_instance


@pytest.fixture
def pacs_connection(pacs) -> PacsConnection:
    """The DICOMweb connection of the (empty) session Orthanc."""
    return connection_of(pacs)


@pytest.fixture
def store_in_pacs(orthanc_instance):
    """``store_in_pacs(paths)``: STOW-RS the files into the session Orthanc."""
    return lambda paths: store(orthanc_instance, list(paths))
