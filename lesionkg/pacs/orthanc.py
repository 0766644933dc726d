"""A real local Orthanc (a DICOM node with a DICOMweb server) for tests, the demo and benchmarks.

Orthanc is Debian's ``orthanc`` package, with the DICOMweb plugin of ``orthanc-dicomweb``, run as a
plain process the way :mod:`lesionkg.db.server` runs Neo4j. One *instance* is one data directory:

    DATA_DIR/instance.json     HTTP and DICOM ports, AE title, user and generated password (0600)
    DATA_DIR/orthanc.json      Orthanc's configuration, written on every start (0600: it holds
                               the password)
    DATA_DIR/storage/          the DICOM files and Orthanc's index (SQLite)
    DATA_DIR/logs/             Orthanc's log files
    DATA_DIR/run/orthanc.pid

HTTP (REST API and DICOMweb under ``/dicom-web/``) answers on 127.0.0.1 only
(``RemoteAccessAllowed`` off) with HTTP basic authentication on; the DICOM port listens for
C-STORE and C-ECHO.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from lesionkg.config.instance import write_private
from lesionkg.config.process import pid_alive, read_pid, stop_process
from lesionkg.db.server import free_port, new_password
from lesionkg.pacs.errors import OrthancError

log = logging.getLogger(__name__)

ORTHANC_BINARY = "Orthanc"
#: where Debian's orthanc-dicomweb puts the plugin
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USERNAME = "lesionkg"
AE_TITLE = "LKG-ORTHANC"


@dataclass(frozen=True, slots=True)
class OrthancInstance:
    """A local Orthanc's identity, as stored in ``instance.json``."""

    data_dir: Path
    http_port: int
    dicom_port: int
    ae_title: str
    username: str
    password: str

    @property
    def url(self) -> str:
        """The REST API's base URL."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb service's base URL (QIDO-RS, WADO-RS, STOW-RS)."""
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)


@dataclass(frozen=True, slots=True)
class OrthancStatus:
    data_dir: Path
    running: bool
    pid: int | None
    url: str | None
    dicom_port: int | None
    version: str | None

    def as_dict(self) -> dict:
        return {
            "running": self.running,
            "pid": self.pid,
            "url": self.url,
            "dicomweb_url": f"{self.url}/dicom-web" if self.url else None,
            "dicom_port": self.dicom_port,
            "version": self.version,
            "data_dir": str(self.data_dir),
        }

    def describe(self) -> str:
        if not self.running:
            return f"Orthanc is not running ({self.data_dir})"
        return (
            f"Orthanc {self.version} is running (pid {self.pid}): REST {self.url}, DICOMweb "
            f"{self.url}/dicom-web, DICOM port {self.dicom_port} (data in {self.data_dir})"
        )


def default_orthanc_dir() -> Path:
    """``$LESIONKG_HOME/orthanc`` or ``~/.lesionkg/orthanc``."""
    home = os.environ.get("LESIONKG_HOME")
    return (Path(home) if home else Path.home() / ".lesionkg") / "orthanc"


def _instance_file(data_dir: Path) -> Path:
    return data_dir / "instance.json"


def _pid_file(data_dir: Path) -> Path:
    return data_dir / "run" / "orthanc.pid"


def read_orthanc_instance(data_dir: Path) -> OrthancInstance | None:
    """The instance created in ``data_dir`` by an earlier start, or None."""
    path = _instance_file(Path(data_dir))
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        return OrthancInstance(
            Path(data_dir),
            int(raw["http_port"]),
            int(raw["dicom_port"]),
            str(raw["ae_title"]),
            str(raw["username"]),
            str(raw["password"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise OrthancError(
            f"{path}: unreadable instance file ({exc}); delete it to start anew"
        ) from exc


def find_orthanc() -> tuple[str, Path]:
    """The Orthanc binary and the DICOMweb plugin, else :class:`OrthancError` saying what to
    install."""
    binary = shutil.which(ORTHANC_BINARY) or (
        "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None
    )
    if binary is None:
        raise OrthancError(
            "Orthanc not found: install it with 'apt-get install orthanc orthanc-dicomweb' "
            "(or 'make setup'), or point LESIONKG_DICOMWEB_URL at a PACS of your own"
        )
    if not DICOMWEB_PLUGIN.is_file():
        raise OrthancError(
            f"the Orthanc DICOMweb plugin is missing ({DICOMWEB_PLUGIN}): "
            "apt-get install orthanc-dicomweb"
        )
    return binary, DICOMWEB_PLUGIN


def _config(instance: OrthancInstance, plugin: Path) -> dict:
    storage = instance.data_dir / "storage"
    return {
        "Name": "LesionKG local Orthanc",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "StorageCompression": False,
        "Plugins": [str(plugin)],
        "HttpServerEnabled": True,
        "HttpPort": instance.http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {instance.username: instance.password},
        "HttpThreadsCount": 16,
        "KeepAlive": True,
        "HttpDescribeErrors": True,
        "DicomServerEnabled": True,
        "DicomAet": instance.ae_title,
        "DicomPort": instance.dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomModalities": {},
        "OrthancPeers": {},
        "LimitFindResults": 0,
        "LimitFindInstances": 0,
        "SaveJobs": False,
        "StableAge": 2,
        "ExecuteLuaEnabled": False,
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": True,
            "Ssl": False,
            "StudiesMetadata": "MainDicomTags",
            "SeriesMetadata": "MainDicomTags",
        },
    }


def system_info(instance: OrthancInstance, timeout_s: float = 2.0) -> dict | None:
    """Orthanc's ``/system`` answer (version, AE title...), or None when it does not answer."""
    try:
        response = requests.get(f"{instance.url}/system", auth=instance.auth, timeout=timeout_s)
    except requests.RequestException:
        return None
    if response.status_code != 200:
        return None
    return dict(response.json())


def _log_tail(data_dir: Path, lines: int = 25) -> str:
    logs = sorted((data_dir / "logs").glob("*"), key=lambda p: p.stat().st_mtime)
    out: list[str] = []
    for path in logs[-2:]:
        out += [
            f"[{path.name}] {line}"
            for line in path.read_text(errors="replace").splitlines()[-lines:]
        ]
    return "\n".join(out) or "(no logs)"


def start(
    data_dir: Path,
    http_port: int | None = None,
    dicom_port: int | None = None,
    *,
    timeout_s: float = 60.0,
) -> OrthancInstance:
    """Start (or find running) the local Orthanc of ``data_dir``; returns once HTTP answers.

    The first start picks free ports (unless given) and generates a password; later starts reuse
    them (a port given explicitly replaces the stored one)."""
    data_dir = Path(data_dir).resolve()
    instance = read_orthanc_instance(data_dir)
    pid = read_pid(_pid_file(data_dir))
    if (
        pid is not None
        and instance is not None
        and _wait_for_http(instance, pid, data_dir, timeout_s)
    ):
        return instance
    binary, plugin = find_orthanc()
    if instance is None:
        instance = OrthancInstance(
            data_dir,
            http_port or free_port(),
            dicom_port or free_port(),
            AE_TITLE,
            USERNAME,
            new_password(),
        )
    else:
        instance = OrthancInstance(
            data_dir,
            http_port or instance.http_port,
            dicom_port or instance.dicom_port,
            instance.ae_title,
            instance.username,
            instance.password,
        )
    for sub in ("storage", "logs", "run"):
        (data_dir / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    write_private(
        _instance_file(data_dir),
        json.dumps(
            {
                "http_port": instance.http_port,
                "dicom_port": instance.dicom_port,
                "ae_title": instance.ae_title,
                "username": instance.username,
                "password": instance.password,
            },
            indent=2,
        )
        + "\n",
    )
    config = data_dir / "orthanc.json"
    write_private(config, json.dumps(_config(instance, plugin), indent=2) + "\n")
    console = open(data_dir / "logs" / "console.log", "ab")  # noqa: SIM115 (owned by the child)
    child = subprocess.Popen(
        [binary, f"--logdir={data_dir / 'logs'}", str(config)],
        stdout=console,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=data_dir,
        start_new_session=True,
    )
    console.close()
    _pid_file(data_dir).write_text(f"{child.pid}\n")
    if not _wait_for_http(instance, child.pid, data_dir, timeout_s, child):
        stop(data_dir)
        raise OrthancError(
            f"Orthanc did not answer on {instance.url} within {timeout_s:.0f} s; "
            f"last log lines:\n{_log_tail(data_dir)}"
        )
    log.info("Orthanc is running at %s (data in %s)", instance.url, data_dir)
    return instance


def _wait_for_http(
    instance: OrthancInstance,
    pid: int,
    data_dir: Path,
    timeout_s: float,
    child: subprocess.Popen | None = None,
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (child is not None and child.poll() is not None) or not pid_alive(pid):
            raise OrthancError(
                "Orthanc exited during start-up (a port taken?); last log lines:\n"
                + _log_tail(data_dir)
            )
        if system_info(instance) is not None:
            return True
        time.sleep(0.2)
    return False


def stop(data_dir: Path, timeout_s: float = 30.0) -> bool:
    """Stop the Orthanc of ``data_dir``; True if one was running."""
    data_dir = Path(data_dir).resolve()
    return stop_process(_pid_file(data_dir), timeout_s, poll_s=0.1, kill_grace_s=0.3)


def status(data_dir: Path) -> OrthancStatus:
    data_dir = Path(data_dir).resolve()
    instance = read_orthanc_instance(data_dir)
    pid = read_pid(_pid_file(data_dir))
    info = system_info(instance) if (pid is not None and instance is not None) else None
    return OrthancStatus(
        data_dir,
        info is not None,
        pid,
        instance.url if instance else None,
        instance.dicom_port if instance else None,
        str(info.get("Version")) if info else None,
    )


def env_lines(instance: OrthancInstance) -> list[str]:
    """Shell ``export`` lines that point LesionKG's DICOMweb sync at ``instance``."""
    return [
        f"export LESIONKG_DICOMWEB_URL={instance.dicomweb_url}",
        f"export LESIONKG_DICOMWEB_USER={shlex.quote(instance.username)}",
        f"export LESIONKG_DICOMWEB_PASSWORD={shlex.quote(instance.password)}",
        f"export LESIONKG_ORTHANC_DICOM_PORT={instance.dicom_port}",
        f"export LESIONKG_ORTHANC_AE_TITLE={instance.ae_title}",
    ]
