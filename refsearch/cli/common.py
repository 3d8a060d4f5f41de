"""What every command shares: turning library errors into one-line messages and exit codes."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import typer

from ..backbones import BackboneError
from ..build import default_index_path
from ..config import ConfigMismatchError
from ..images import ImageError
from ..manifest import IndexStateError

USER_ERRORS = (BackboneError, ConfigMismatchError, ImageError, IndexStateError, FileNotFoundError,
               NotADirectoryError, FileExistsError, KeyError, ValueError, PermissionError)

INDEX_HELP = "Index folder (default: $REFSEARCH_INDEX or ./refsearch.index)."


@contextmanager
def user_errors(interrupted_hint: str = "") -> Iterator[None]:
    """Print a refsearch error as one line on stderr and exit 2; Ctrl-C exits 130."""
    try:
        yield
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo(f"interrupted{': ' + interrupted_hint if interrupted_hint else ''}", err=True)
        raise typer.Exit(130) from None


def resolve_index(index: Path | None) -> Path:
    return index if index is not None else default_index_path()


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def note(text: str) -> None:
    typer.echo(f"note: {text}", err=True)
