"""How to reach a PACS over DICOMweb: its URL and credentials, retries, and a count of requests.

A PACS (or an Orthanc in front of it) is configured like Neo4j, by environment variables or
options: ``LESIONKG_DICOMWEB_URL`` (the DICOMweb base URL, e.g. ``http://pacs:8042/dicom-web``),
``LESIONKG_DICOMWEB_USER`` and ``LESIONKG_DICOMWEB_PASSWORD`` (HTTP basic authentication; none
when unset). When the URL is the local Orthanc's (``lesionkg orthanc start``) and no credentials
are set, its generated ones are used.

:class:`PacsClient` wraps ``dicomweb-client``: one client (and HTTP session) per thread, so that
retrievals can run in parallel; every HTTP request is counted by kind (``qido``, ``wado``,
``stow``) from the session itself, retries included. Connection failures and 5xx answers are
retried with exponential backoff (:class:`PacsRetry`), then raise :class:`PacsError`; 401/403
raise :class:`PacsAuthError` at once (retrying wrong credentials only locks accounts).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

from lesionkg.pacs.errors import PacsAuthError, PacsError
from lesionkg.pacs.orthanc import default_orthanc_dir, read_orthanc_instance

log = logging.getLogger(__name__)
T = TypeVar("T")

URL_VAR = "LESIONKG_DICOMWEB_URL"
USER_VAR = "LESIONKG_DICOMWEB_USER"
PASSWORD_VAR = "LESIONKG_DICOMWEB_PASSWORD"


@dataclass(frozen=True, slots=True)
class PacsConnection:
    """A DICOMweb service: base URL and optional HTTP basic credentials."""

    url: str
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never show the password
        return f"PacsConnection(url={self.url!r}, username={self.username!r})"

    @property
    def source(self) -> str:
        """The name of this source in the graph (the URL without a trailing slash)."""
        return self.url.rstrip("/")


def resolve_connection(
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    orthanc_dir: Path | None = None,
) -> PacsConnection:
    """Options first, then ``LESIONKG_DICOMWEB_*``, then the local Orthanc's own credentials."""
    env = os.environ if env is None else env
    url = url or env.get(URL_VAR)
    username = username or env.get(USER_VAR)
    password = password or env.get(PASSWORD_VAR)
    local = read_orthanc_instance(orthanc_dir or default_orthanc_dir())
    if url is None:
        if local is None:
            raise PacsError(
                f"no PACS configured: give --dicomweb URL or set {URL_VAR} (and {USER_VAR}, "
                f"{PASSWORD_VAR}), or start a local Orthanc with 'lesionkg orthanc start'"
            )
        url = local.dicomweb_url
    if not url.startswith(("http://", "https://")):
        raise PacsError(f"DICOMweb URL {url!r}: expected http:// or https://")
    if username is None and local is not None and url.rstrip("/") == local.dicomweb_url:
        username, password = local.username, local.password
    if username is not None and password is None:
        raise PacsError(f"{USER_VAR} is set but no password: set {PASSWORD_VAR}")
    return PacsConnection(url.rstrip("/"), username, password)


@dataclass(frozen=True, slots=True)
class PacsRetry:
    """How long to keep trying an unreachable or failing PACS, seconds (waits double)."""

    first_wait_s: float = 0.5
    max_wait_s: float = 8.0
    give_up_after_s: float = 60.0


def request_kind(method: str, url: str) -> str:
    """``stow`` (POST), ``wado`` (an instance, its frames or metadata), or ``qido`` (a search)."""
    if method.upper() == "POST":
        return "stow"
    path = url.split("?", 1)[0].rstrip("/")
    parts = path.split("/")
    if parts[-1] in ("frames", "metadata", "rendered") or (
        len(parts) >= 2 and parts[-2] in ("instances", "frames")
    ):
        return "wado"
    return "qido"


class RequestCounter:
    """HTTP requests by kind, counted from the sessions' response hooks (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        kind = request_kind(response.request.method or "GET", response.request.url or "")
        with self._lock:
            self.counts[kind] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


class PacsClient:
    """A retrying, counting, thread-safe DICOMweb client of one :class:`PacsConnection`."""

    def __init__(
        self,
        connection: PacsConnection,
        retry: PacsRetry | None = None,
        *,
        counter: RequestCounter | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.connection = connection
        self.retry = retry or PacsRetry()
        self.counter = counter or RequestCounter()
        self.timeout_s = timeout_s
        self._local = threading.local()
        self.retries = 0

    def _client(self) -> DICOMwebClient:
        client = getattr(self._local, "client", None)
        if client is None:
            session = requests.Session()
            if self.connection.username is not None:
                session.auth = (self.connection.username, self.connection.password or "")
            session.hooks["response"].append(self.counter.hook)
            timeout = self.timeout_s
            session.request = _with_timeout(session.request, timeout)  # type: ignore[method-assign]
            client = DICOMwebClient(self.connection.url, session=session)
            client.set_http_retry_params(retry=False)
            self._local.client = client
            self._local.session = session
        return client

    def _session(self) -> requests.Session:
        self._client()
        return self._local.session

    def call(self, action: Callable[[DICOMwebClient], T], what: str) -> T:
        """``action(client)``, retried with backoff on connection failures and 5xx answers."""
        started = time.monotonic()
        wait = self.retry.first_wait_s
        attempt = 0
        while True:
            try:
                return action(self._client())
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                if status in (401, 403):
                    raise PacsAuthError(
                        f"{self.connection.url} refused the credentials (HTTP {status}) while "
                        f"trying to {what}: check {USER_VAR} and {PASSWORD_VAR}"
                    ) from exc
                if status < 500:
                    raise
                error: Exception = exc
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:  # refused, timed out, or cut off mid-answer (a restart)
                error = exc
            attempt += 1
            self.retries += 1
            elapsed = time.monotonic() - started
            if elapsed + wait > self.retry.give_up_after_s:
                raise PacsError(
                    f"the PACS at {self.connection.url} is unreachable: could not {what} after "
                    f"{attempt} tries over {elapsed:.0f} s ({type(error).__name__}: "
                    f"{_short(error)}); what was committed before stays, run again to resume"
                ) from error
            log.warning(
                "PACS: could not %s (%s); try %d again in %.1f s",
                what,
                _short(error),
                attempt + 1,
                wait,
            )
            time.sleep(wait)
            wait = min(wait * 2, self.retry.max_wait_s)

    # -- QIDO-RS --

    def search_instances(
        self,
        *,
        study: str | None = None,
        series: str | None = None,
        filters: dict[str, Any] | None = None,
        fields: list[str] | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[dict]:
        """One page of a QIDO-RS instance search (JSON datasets)."""
        return self.call(
            lambda c: c.search_for_instances(
                study_instance_uid=study,
                series_instance_uid=series,
                search_filters=filters or {},
                fields=fields,
                offset=offset or None,
                limit=limit,
            ),
            "search for instances",
        )

    # -- WADO-RS --

    def retrieve(self, study: str, series: str, sop: str) -> pydicom.Dataset | None:
        """One instance (WADO-RS), or None when the PACS does not have it (404)."""

        def action(client: DICOMwebClient) -> pydicom.Dataset | None:
            try:
                return client.retrieve_instance(study, series, sop)
            except requests.HTTPError as exc:
                if exc.response is not None and exc.response.status_code == 404:
                    return None
                raise

        return self.call(action, f"retrieve instance {sop}")

    def retrieve_bytes(self, study: str, series: str, sop: str) -> bytes | None:
        """One instance (WADO-RS) as the DICOM file the PACS stores, undecoded; None when the
        PACS does not have it (404). Cheaper than :meth:`retrieve` for what is only written to
        disk."""
        url = f"{self.connection.url}/studies/{study}/series/{series}/instances/{sop}"

        def action(client: DICOMwebClient) -> bytes | None:
            response = self._session().get(url, headers={"Accept": MULTIPART_DICOM})
            if response.status_code == 404:
                return None
            response.raise_for_status()
            parts = multipart_parts(response)
            if len(parts) != 1:
                raise PacsError(f"{url}: expected one DICOM part, got {len(parts)}")
            return parts[0]

        return self.call(action, f"retrieve instance {sop}")

    # -- STOW-RS (tests, demo, benchmark) --

    def store(self, datasets: list[pydicom.Dataset]) -> None:
        """Store instances (STOW-RS)."""
        self.call(lambda c: c.store_instances(datasets), f"store {len(datasets)} instances")

    def store_files(self, paths: list[Path], batch: int = 50) -> None:
        for start in range(0, len(paths), batch):
            self.store([pydicom.dcmread(p) for p in paths[start : start + batch]])


MULTIPART_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def multipart_parts(response: requests.Response) -> list[bytes]:
    """The bodies of a ``multipart/related`` answer (RFC 2046), in order."""
    content_type = response.headers.get("Content-Type", "")
    boundary = None
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise PacsError(f"{response.url}: a multipart answer without a boundary ({content_type})")
    delimiter = b"--" + boundary.encode()
    parts = []
    for chunk in response.content.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        _head, sep, body = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        parts.append(body[:-2] if body.endswith(b"\r\n") else body)
    return parts


def _with_timeout(request: Callable[..., requests.Response], timeout: float):
    def wrapped(method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", timeout)
        return request(method, url, **kwargs)

    return wrapped


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


def dataset_bytes(ds: pydicom.Dataset) -> bytes:
    """``ds`` as a DICOM Part 10 file."""
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
