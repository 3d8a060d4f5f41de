"""The typer application that every command module registers on."""
from __future__ import annotations

import typer
from typer.core import TyperCommand, TyperGroup


class _FlagsTakeNoValue:
    """Help that shows no value type beside a flag (`--json`, `--help`): it takes none."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_FlagsTakeNoValue, TyperCommand):
    pass


class _Group(_FlagsTakeNoValue, TyperGroup):
    pass


class _App(typer.Typer):
    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or _Command, **kwargs)


app = _App(
    cls=_Group,
    name="refsearch",
    help="Find colour reference photos for a grayscale photo in an indexed collection, and colorize it "
    "from them. Start with `refsearch build-index DIR`, then `refsearch query IMAGE`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow; a blank line starts a new one
)
