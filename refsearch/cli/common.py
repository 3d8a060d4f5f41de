"""What every command shares: turning refsearch's errors into messages and exit codes.

Command modules import only this, typer and the standard library at module level; the library (and
with it torch, faiss, numpy and PIL) is imported inside the command functions, so that `--help` is quick.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import typer

from ..errors import USER_FILE_ERRORS, RefsearchError

INDEX_HELP = "Index folder (default: $REFSEARCH_INDEX or ./refsearch.index)."
# refsearch.images.DEFAULT_MAX_PIXELS, repeated here because importing it loads PIL and numpy, which --help
# must not wait for; a test checks that they agree.
DEFAULT_MAX_PIXELS = 50_000_000
MAX_PIXELS_HELP = ("Largest image decoded, in pixels (a JPEG counts at the reduced size it is decoded at); "
                   "larger ones are refused. Default 50 million.")
# The search request's fields as the command line names them (refsearch.request.SearchRequest).
SEARCH_OPTION_NAMES = {"k": "-k", "class_wnid": "--class", "any_class": "--any-class",
                       "exclude_self": "--exclude-self", "global_candidates": "--candidates",
                       "luminance_weight": "--lum-weight", "rescue_candidates": "--rescue",
                       "class_choice": "--widen", "rerank": "--global-only"}


@contextmanager
def user_errors(interrupted_hint: str = "") -> Iterator[None]:
    """Report a problem the user can fix (a RefsearchError, or a missing, misplaced or forbidden file) as
    `error: MESSAGE` on stderr, with a `hint: ...` line when there is one, and exit 2; Ctrl-C exits 130.
    Anything else is a bug: it propagates with its traceback (exit 1)."""
    try:
        yield
    except RefsearchError as exc:
        fail(exc.message, exc.hint)
    except USER_FILE_ERRORS as exc:
        fail(_describe_os_error(exc))
    except KeyboardInterrupt:
        typer.echo(f"interrupted{': ' + interrupted_hint if interrupted_hint else ''}", err=True)
        raise typer.Exit(130) from None


def fail(message: str, hint: str = "") -> None:
    """Print `error: MESSAGE` (and `hint: HINT`) on stderr and exit 2."""
    typer.echo(f"error: {message}", err=True)
    if hint:
        typer.echo(f"hint: {hint}", err=True)
    raise typer.Exit(2) from None


def _describe_os_error(exc: OSError) -> str:
    # one raised by the system reads "[Errno 2] No such file or directory: 'x'"; say "x: no such file ..."
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror[0].lower()}{exc.strerror[1:]}"
    return str(exc)


def resolve_index(index: Path | None) -> Path:
    from ..layout import default_index_path

    return index if index is not None else default_index_path()


def open_index(index: Path | None, **options):
    """Index.open on --index (or the default index), importing the search library only now."""
    from ..search import Index

    return Index.open(resolve_index(index), **options)


def search_request(**options):
    """The SearchRequest of a command's options. Options that contradict each other are a usage error, a
    value the library does not know an `error:` line; both name the command's options."""
    from ..request import SearchRequest, SearchRequestError

    try:
        return SearchRequest(**options)
    except SearchRequestError as error:
        message, hint = error.worded(SEARCH_OPTION_NAMES)
        if len(error.fields) > 1:
            raise typer.BadParameter(f"{message}; {hint}" if hint else message) from None
        fail(message, hint)


def runtime_option():
    return typer.Option("auto", "--runtime", help="What runs the network: auto (ONNX Runtime on CPU, three "
                        "times as fast as torch there and no torch to load; torch on a GPU or in a reduced "
                        "precision), onnxruntime or torch. The descriptors agree within cosine 1e-4.")


def max_pixels_option():
    return typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help=MAX_PIXELS_HELP)


def limit_pixels(ctx: typer.Context, max_pixels: int) -> None:
    """Hold the images the command of `ctx` decodes to `max_pixels`, until it returns."""
    from ..images import pixel_limit

    ctx.with_resource(pixel_limit(max_pixels))


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def print_json_line(data) -> None:
    """One compact JSON object on its own line (JSON Lines), for output with a record per input."""
    sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")


def note(text: str) -> None:
    typer.echo(f"note: {text}", err=True)


def network_note(index) -> None:
    """Say how the index's network was obtained, once it is, when there is something to say: a backbone
    that runs on torch because it could not be exported, a graph cache that could not be written."""
    if index.network.loaded and index.network.note:
        note(index.network.note)
