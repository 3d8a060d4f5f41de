"""The `refsearch` command: a thin layer over the library; each command module registers on `app`."""
from __future__ import annotations

from . import index_commands  # noqa: F401  (registers its commands)
from . import adapt_command, colorize_command, curation_commands, serve_command  # noqa: F401
from .app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
