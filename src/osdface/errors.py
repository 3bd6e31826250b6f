"""Exceptions that the CLI turns into one clear line (no traceback)."""


class OSDFaceError(Exception):
    """Base class: the message is complete and meant for the user."""


class WeightsNotFoundError(OSDFaceError):
    """Weights are missing or incomplete; the message says what to download and where to put it."""


class WeightsFormatError(OSDFaceError):
    """A weight file exists but does not hold what it should (missing/unexpected keys, bad shapes)."""


class ImageReadError(OSDFaceError):
    """An input image could not be read; the message names the file and the reason."""


class DatasetError(OSDFaceError):
    """A dataset cannot be built or served; the message names the folder(s) and the problem."""


class VideoReadError(ImageReadError):
    """An input video cannot be read whole (no video stream, no frames, corrupt or truncated data); the
    message names the file and the reason."""


class Cancelled(OSDFaceError):
    """Work stopped by its caller's cancel (the web page's Cancel button): a photo run between two photos, a
    clip between two frames; its files are already removed."""
