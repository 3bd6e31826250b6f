"""``osdface ui``: serve the web page (an optional extra: ``pip install 'osdface[ui]'``)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer


def ui(
    host: Annotated[str, typer.Option(help="Address to serve on. The default serves this machine only; 0.0.0.0 serves everyone who can reach it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 7860,
    weights: Annotated[Optional[Path], typer.Option(help="As `osdface restore --weights`. Default: $OSDFACE_HOME/osdface, then $OSDFACE_HOME/osdface-release, then the bundled mini model.")] = None,
    model: Annotated[str, typer.Option(help="auto | paper | mini | mini256 | mini128, as `osdface restore --model`.")] = "auto",
    sd_model: Annotated[Optional[str], typer.Option(help="SD 2.1-base for the official release folder, as `osdface restore --sd-model`.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps, as `osdface restore --device`.")] = "auto",
    dtype: Annotated[str, typer.Option(envvar="OSDFACE_DTYPE", help="auto | float32 | float16 | bfloat16, as `osdface restore --dtype`.")] = "auto",
    detector_weights: Annotated[Optional[str], typer.Option(help="Local MTCNN weights, as `osdface restore --detector-weights`.")] = None,
    detail_guard: Annotated[str, typer.Option(envvar="OSDFACE_DETAIL_GUARD", help="on | off, as `osdface restore --detail-guard`.")] = "on",
    identity_guard: Annotated[str, typer.Option(envvar="OSDFACE_IDENTITY_GUARD", help="DIST | auto | off, as `osdface restore --identity-guard`.")] = "auto",
    concurrency: Annotated[int, typer.Option(min=1, max=8, help="Restorations run at once; the others wait in the queue.")] = 1,
    queue_size: Annotated[int, typer.Option(min=1, help="Jobs that may wait in the queue; more are turned away with a message.")] = 16,
    share: Annotated[bool, typer.Option("--share", help="Also ask gradio for a public share link: the page is then reachable from the internet (off by default).")] = False,
) -> None:
    """Serve a web page that restores photos: drop photos, compare before/after, download.

    The model is loaded once; uploads are limited to 20 files of 50 MB and 100 megapixels each (the
    output after upscaling included), one queue runs --concurrency jobs at a time, and every temporary
    file is removed when the server stops (Ctrl-C). Nothing is sent anywhere: no telemetry, no share
    link unless --share.
    """
    from ..errors import OSDFaceError
    from ..loading import check_dtype_name, find_weights, load_pipeline, resolve_device

    # 1. A private folder for gradio's uploads and cache (it reads GRADIO_TEMP_DIR on import), removed at the end
    uploads = Path(tempfile.mkdtemp(prefix="osdface-ui-uploads-"))
    before = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    try:
        # 2. gradio (the ui extra), every flag and the weights' place, before the model loads
        try:
            from ..ui import page
        except ImportError as err:
            raise OSDFaceError(f"osdface ui needs the ui extra ({err}): pip install 'osdface[ui]'") from None
        check_dtype_name(dtype)
        resolve_device(device)
        kind, folder = find_weights(str(weights) if weights else None, model)
        from ..photos import make_no_harm

        no_harm, guard_notes = make_no_harm(detail_guard, identity_guard)
        for line in guard_notes:
            typer.echo(f"note: {line}", err=True)
        if not _is_loopback(host):
            typer.echo(f"note: serving on {host}: anyone who can reach this machine can use the page", err=True)
        # 3. The model, once
        pipe = load_pipeline(str(weights) if weights else None, sd_model, device, dtype, model=model,
                             notify=lambda line: typer.echo(f"note: {line}", err=True))
        # 4. The page, until Ctrl-C
        from ..ui.jobs import describe_model

        page.serve(pipe, describe_model(kind, pipe.sample_size, folder, pipe.small_faces), uploads, host=host, port=port, share=share,
                   concurrency=concurrency, queue_size=queue_size, detector_weights=detector_weights,
                   no_harm=no_harm)
    finally:
        shutil.rmtree(uploads, ignore_errors=True)
        if before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = before


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
