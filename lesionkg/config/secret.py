"""The pseudonymisation secret: a key file of random bytes, created atomically with mode 0600
and refused when others can read it (:mod:`lesionkg.core.pseudonym` says what it keys)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from lesionkg.config.paths import default_data_dir
from lesionkg.core.errors import ConfigurationError
from lesionkg.core.pseudonym import MIN_SECRET_BYTES

#: Length of a newly created secret, bytes (the HMAC-SHA256 output size).
SECRET_BYTES = 32


#: Longest key file accepted, bytes; anything larger is not a key file put there on purpose.
MAX_SECRET_BYTES = 4096

SECRET_FILE_NAME = "pseudonym.key"

#: Permission bits a key file must not have: read or write by others, write by the group. A
#: group-readable key is allowed for a service group that shares it on purpose.
_FORBIDDEN_MODE = stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP

#: errno values of file systems without hard links (os.link); creation falls back to O_EXCL.
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV}


def default_secret_path() -> Path:
    """``$LESIONKG_HOME/pseudonym.key``: beside the local Neo4j folder, not inside it."""
    return default_data_dir().parent / SECRET_FILE_NAME


def load_or_create_secret(path: str | os.PathLike[str] | None = None) -> bytes:
    """The pseudonymisation key stored in ``path`` (default :func:`default_secret_path`).

    A missing file is created with :data:`SECRET_BYTES` random bytes, mode 0600, atomically.
    Raises :class:`~lesionkg.core.errors.ConfigurationError`, naming the file and the fix, when the
    file is not a regular file, cannot be read or created, is readable or writable by other users
    or writable by its group, or is shorter than :data:`MIN_SECRET_BYTES` or longer than
    :data:`MAX_SECRET_BYTES` bytes.
    """
    key_path = Path(path) if path is not None else default_secret_path()
    try:
        return _read_secret(key_path)
    except FileNotFoundError:
        pass
    _create_secret(key_path)
    try:
        return _read_secret(key_path)
    except FileNotFoundError:
        # Only a dangling symbolic link exists and is not found after creating the key.
        raise ConfigurationError(
            f"pseudonym key {key_path} is a symbolic link to a missing file: restore the key it "
            "points to, or remove the link"
        ) from None


def _read_secret(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise _not_a_file(path) from None
    except OSError as exc:
        raise ConfigurationError(
            f"pseudonym key {path} cannot be read ({exc.strerror}): run LesionKG as the user "
            "that owns it, or point it at another key file"
        ) from None
    # Checks go through the open descriptor, so the file checked is the file read.
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_a_file(path)
        # POSIX modes mean nothing on Windows; there the folder's ACL protects the key.
        if os.name == "posix" and info.st_mode & _FORBIDDEN_MODE:
            raise ConfigurationError(
                f"pseudonym key {path} has mode {stat.S_IMODE(info.st_mode):04o}: other users "
                f"can read or change it, and whoever has it can re-identify patients. Run "
                f"'chmod 600 {path}' (and find out who may have copied it)"
            )
        secret = b""
        # os.read may return less than asked (NFS, signals); read to the end or past the limit.
        while len(secret) <= MAX_SECRET_BYTES:
            chunk = os.read(fd, MAX_SECRET_BYTES + 1 - len(secret))
            if not chunk:
                break
            secret += chunk
    finally:
        os.close(fd)
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"pseudonym key {path} holds {len(secret)} bytes, fewer than the "
            f"{MIN_SECRET_BYTES} a key needs. If no graph was built with it, delete the file and "
            "LesionKG creates a new random key; otherwise restore the key from your backup "
            "(another key gives every patient new ids)"
        )
    if len(secret) > MAX_SECRET_BYTES:
        raise ConfigurationError(
            f"pseudonym key {path} is larger than {MAX_SECRET_BYTES} bytes: not a key file. "
            "Point LesionKG at the right file"
        )
    return secret


def _not_a_file(path: Path) -> ConfigurationError:
    return ConfigurationError(
        f"pseudonym key {path} is not a regular file: remove it or point LesionKG at a key file"
    )


def _create_secret(path: Path) -> None:
    """Write a new random key to ``path`` unless another process does so first."""
    folder = path.parent
    try:
        # Only folders created here get 0700; an existing LESIONKG_HOME keeps its mode.
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the folder {folder} for the pseudonym key {path} ({exc.strerror}): "
            "create it, or set LESIONKG_HOME to a writable folder"
        ) from None
    secret = secrets.token_bytes(SECRET_BYTES)
    # The key is written in full under a temporary name and then linked into place: readers see
    # either no file or the whole key, and os.link never replaces a key another process created
    # in the meantime (os.replace would, and the two processes would then use different keys).
    tmp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        _write_new(tmp, secret)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: its key is the key
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            with contextlib.suppress(FileExistsError):
                _write_new(path, secret)
        _sync_folder(folder)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the pseudonym key {path} ({exc.strerror}): make {folder} writable, "
            "or set LESIONKG_HOME to a writable folder"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (never an existing one) with mode 0600 and ``data``, flushed to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # the umask can only remove bits, but be exact
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    # Makes the new directory entry durable on POSIX; folders cannot be opened on Windows.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
