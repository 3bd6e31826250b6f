"""The ``osdface`` command line: thin typed commands over the Python API.

Usage:
    osdface restore faces/ --output restored/
    osdface convert weights/osdface-release --sd-model weights/stable-diffusion-2-1-base --output weights/osdface
    osdface degrade ffhq_val/ --output celeba_like_lq/ --preset daefr --gt-dir celeba_like_hq/
    osdface evaluate --pred OSDFace=results/ --gt celeba_like_hq/ --output eval/
    osdface benchmark --random-weights
    osdface ui                     # a web page on http://127.0.0.1:7860 (pip install 'osdface[ui]')
"""

from __future__ import annotations

import os
import sys

import typer

from . import align, benchmark, convert, degrade, download, evaluate, restore, train, train_vre, ui

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode="markdown",
                  help="OSDFace: one-step diffusion face restoration.")
app.command("restore")(restore.restore)
app.command("convert")(convert.convert)
app.command("degrade")(degrade.degrade)
app.command("align")(align.align)
app.command("evaluate")(evaluate.evaluate)
app.command("benchmark")(benchmark.benchmark)
app.command("train-vre")(train_vre.train_vre)
app.command("train")(train.train)
app.command("download")(download.download)
app.command("ui")(ui.ui)


def main() -> None:
    """Console entry point: known errors become one line on stderr (set OSDFACE_DEBUG=1 for tracebacks)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import warnings

    # one plain line per warning (no site-packages path); ours name the input file they concern
    warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}", file=sys.stderr)
    from ..errors import OSDFaceError

    try:
        code = app(standalone_mode=False)  # click returns a typer.Exit's code instead of raising
        if isinstance(code, int) and code:
            sys.exit(code)
    except OSDFaceError as err:
        if os.environ.get("OSDFACE_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except (typer.Exit, SystemExit) as stop:
        code = getattr(stop, "exit_code", getattr(stop, "code", 0))
        if code == 130:  # Ctrl-C (typer turns KeyboardInterrupt into Exit(130))
            _interrupted()
        sys.exit(code)
    except KeyboardInterrupt:
        if os.environ.get("OSDFACE_DEBUG"):
            raise
        _interrupted()
        sys.exit(130)

    except Exception as err:
        if _is_usage_error(err):  # a bad flag or argument: one line, exit 2
            print(f"error: {_usage_message(err)} (see `osdface {_command_name()} --help`)", file=sys.stderr)
            sys.exit(2)
        raise


def _interrupted() -> None:
    print("\ninterrupted: finished outputs are kept (a video resumes after its last finished segment); "
          "run the same command again to go on", file=sys.stderr)


def _is_usage_error(err: Exception) -> bool:
    """click's parameter/usage errors, and the copies of them that typer ≥ 0.29 bundles (typer._click)."""
    return any(cls.__name__ in ("UsageError", "ClickException") and cls.__module__.endswith("click.exceptions")
               for cls in type(err).__mro__)


def _usage_message(err: Exception) -> str:
    message = err.format_message() if hasattr(err, "format_message") else str(err)
    return " ".join(message.split())  # one line


def _command_name() -> str:
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    return words[0] if words and words[0] in {c.name for c in app.registered_commands} else ""
