"""Errors of ``osdface download``: user-facing ones are OSDFaceError (one line, exit status 2)."""

from __future__ import annotations

from ..errors import OSDFaceError


class DownloadError(OSDFaceError):
    """A download could not be completed; the message names what failed, the sources tried and what to do."""


class DownloadConfigError(DownloadError):
    """The source list (packaged or ``$OSDFACE_HOME/download_sources.yaml``) or an option is invalid."""


class DiskFullError(DownloadError):
    """Not enough free space: raised before starting (estimate) or when the disk fills up mid-way."""


class VerifyError(DownloadError):
    """``osdface download --verify`` found files that are missing or do not match their recorded sha256."""


class SourceFailed(Exception):
    """One source could not deliver one file (internal: the next source is tried).

    ``whole_source``: the failure concerns the source itself (unreachable, repository gone, a missing
    optional package), so its other files are not asked for.
    """

    def __init__(self, reason: str, whole_source: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.whole_source = whole_source


class ChecksumMismatch(SourceFailed):
    """The file arrived but its sha256 is not the expected one (the partial file is deleted)."""
