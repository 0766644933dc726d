"""The errors of the PACS connection."""

from __future__ import annotations

from lesionkg.core.errors import LesionKGError, ServerError


class PacsError(LesionKGError):
    """The PACS cannot be reached, refuses the credentials, or answers what DICOMweb does not."""


class PacsAuthError(PacsError):
    """The PACS refused the credentials (HTTP 401/403): retrying cannot help."""


class OrthancError(ServerError):
    """The local Orthanc cannot be found, started, reached or stopped."""
