"""The typer application that every command module registers on."""
from __future__ import annotations

import typer

app = typer.Typer(
    name="refsearch",
    help="Find colour reference photos for a grayscale photo in an indexed collection, and colorize it "
    "from them. Start with `refsearch build-index DIR`, then `refsearch query IMAGE`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow; a blank line starts a new one
)
