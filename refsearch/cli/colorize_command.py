"""`colorize`: paint a grayscale photo (or a folder of them) from references retrieved from an index or
given with --ref."""
from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from .app import app
from .common import (
    INDEX_HELP,
    limit_pixels,
    max_pixels_option,
    network_note,
    note,
    open_index,
    print_json,
    runtime_option,
    user_errors,
)

if TYPE_CHECKING:
    from colorize import ColorizeResult
    from colorize.batch import Colorized

# colorize's DEFAULT_METHOD and MAX_SATURATION, repeated here because importing colorize loads torch and
# PIL, which --help must not wait for; a test checks that they agree.
DEFAULT_METHOD = "exemplar"
MAX_SATURATION = 4.0


@app.command("colorize")
def colorize_command(
    ctx: typer.Context,
    image: Optional[Path] = typer.Argument(None, help="Grayscale photo, or a folder of photos (searched "
                                           "recursively). A colour photo is colorized from its luminance."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output PNG (default "
                                          "./NAME_colorized.png), or for a folder the output folder "
                                          "(default ./FOLDER_colorized)."),
    topk: int = typer.Option(3, "--topk", "-k", help="How many retrieved references to colorize from."),
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    refs: Optional[list[Path]] = typer.Option(None, "--ref", help="Use this colour reference (repeatable, "
                                              "best first) instead of searching an index."),
    method: str = typer.Option(DEFAULT_METHOD, "--method", "-m",
                               help="Colorize method (see --list-methods)."),
    prior: Optional[Path] = typer.Option(None, "--prior", help="For the exemplar method: a chroma prior "
                                         "trained with `python -m colorize.training` (default: the one "
                                         "shipped for the network, if any)."),
    list_methods: bool = typer.Option(False, "--list-methods", help="List the colorize methods and exit."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="Also save a contact sheet (input, "
                                         "references with scores, result, confidence map): a PNG, or for a "
                                         "folder a folder."),
    global_only: bool = typer.Option(False, "--global-only", help="Retrieve by global cosine only, without "
                                     "the local re-rank."),
    saturation: float = typer.Option(1.0, "--saturation", "-s", min=0.0, max=MAX_SATURATION,
                                     help="Scale the result's colour: below 1 is closer to the true colours "
                                     "on average (higher PSNR), above 1 more vivid, 0 the gray input "
                                     "(0 to 4; docs/colorize.md has the trade-off)."),
    hint: Optional[list[str]] = typer.Option(None, "--hint", help="A colour point X,Y,#RRGGBB: pixel column "
                                             "and row from the top left, and the colour the photo has there "
                                             "(its chroma is applied, the gray level kept; it spreads along "
                                             "the photo's structure). Repeatable; one photo only."),
    hints_file: Optional[Path] = typer.Option(None, "--hints", help="Colour points from a JSON file: what "
                                              "the page's 'Download points' saves, or the --json output of "
                                              "an earlier run on the same photo (its points come before "
                                              "--hint's)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda, for the network."),
    runtime: str = runtime_option(),
    max_pixels: int = max_pixels_option(),
    as_json: bool = typer.Option(False, "--json", help="Print what was done as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Colorize a grayscale photo from its best colour references: retrieved from an index (top-k, after
    the local re-rank), or given with --ref. The output keeps the input's gray levels exactly."""
    if list_methods:
        _print_methods(as_json)
        return
    if image is None:
        raise typer.BadParameter("give a photo or a folder to colorize (or --list-methods)",
                                 param_hint="IMAGE")
    if topk < 1:
        raise typer.BadParameter(f"must be at least 1, got {topk}", param_hint="--topk")
    if prior is not None and method != "exemplar":
        raise typer.BadParameter(f"a chroma prior is for the exemplar method, not {method!r}",
                                 param_hint="--prior")
    if refs and index is not None:
        raise typer.BadParameter("--ref and --index exclude each other: give references or an index "
                                 "to search")
    folder = image.is_dir()
    if folder and sheet is not None and sheet.suffix:
        raise typer.BadParameter("for a folder, --sheet names a folder for the sheets", param_hint="--sheet")
    if folder and (hint or hints_file):
        raise typer.BadParameter("colour points are points of one photo: give a photo, not a folder",
                                 param_hint="--hint/--hints")
    limit_pixels(ctx, max_pixels)
    with user_errors(), ExitStack() as stack:
        from colorize import Hints, colorize, colorize_with_index
        from colorize.api import load_reference
        from colorize.batch import save_result
        from colorize.exemplar import ExemplarColorizer, default_network
        from refsearch.network import runtime_for

        points = Hints.load(hints_file) if hints_file else Hints()
        points = Hints(points.points + Hints.of(hint or []).points, points.size)
        if refs:
            references = [load_reference(path, i) for i, path in enumerate(refs)]
            # The default network on the runtime and device asked for; left to the methods that use one
            # when nothing is asked (they open it on first use, on CPU).
            asked = runtime != "auto" or device != "cpu"
            network = default_network(runtime_for(runtime, device), device) if asked else None
            colorizer = ExemplarColorizer(network, prior=prior) if prior else method

            def colorize_one(path: Path) -> ColorizeResult:
                return colorize(path, references, colorizer, backbone=network, saturation=saturation,
                                hints=points)
        else:
            opened = stack.enter_context(open_index(index, device=device, runtime=runtime))
            colorizer = ExemplarColorizer(opened.network, prior=prior) if prior else method

            def colorize_one(path: Path) -> ColorizeResult:
                return colorize_with_index(opened, path, topk, colorizer, saturation=saturation, hints=points,
                                           rerank=not global_only)
        if folder:
            _colorize_folder(image, output, sheet, colorize_one, as_json, quiet)
        else:
            output = output or Path(f"{image.stem}_colorized.png")
            done = save_result(colorize_one(image), image, output, sheet)
            _report([done], [], as_json)
        if not refs:
            network_note(opened)


def _colorize_folder(folder: Path, output: Path | None, sheet: Path | None,
                     colorize_one: Callable[[Path], ColorizeResult], as_json: bool, quiet: bool) -> None:
    from colorize import colorize_folder

    output = output or Path(f"{folder.resolve().name}_colorized")
    summary = colorize_folder(folder, output, colorize_one, sheet, progress=not quiet)
    _report(summary.done, summary.failed, as_json)
    if summary.failed and not summary.done:
        raise typer.Exit(2)


def _report(done: list[Colorized], failed: list[tuple[Path, str]], as_json: bool) -> None:
    if as_json:
        print_json({"done": [_as_dict(item) for item in done],
                    "failed": [{"input": str(path), "error": reason} for path, reason in failed]})
    else:
        for item in done:
            references = ", ".join(Path(name).name + ("" if score is None else f" ({score:.3f})")
                                   for name, score in item.references)
            typer.echo(f"{item.output}  ({item.method}, {item.seconds:.1f} s, mean confidence "
                       f"{item.mean_confidence:.2f}; from {references})")
            if item.sheet:
                typer.echo(f"{item.sheet}  (contact sheet)")
    for item in done:
        for text in item.notes:
            note(f"{item.source}: {text}")
    for path, reason in failed:
        typer.echo(f"skipped {path}: {reason}", err=True)


def _as_dict(item: Colorized) -> dict:
    return {"input": str(item.source), "output": str(item.output), "sheet": item.sheet and str(item.sheet),
            "method": item.method, "seconds": round(item.seconds, 3),
            "mean_confidence": round(item.mean_confidence, 4),
            "references": [{"path": name, "score": score} for name, score in item.references],
            "notes": item.notes, **item.hints}


def _print_methods(as_json: bool) -> None:
    with user_errors():
        from colorize import describe_methods

        methods = describe_methods()
    if as_json:
        print_json([{"name": name, "description": text, "default": name == DEFAULT_METHOD}
                    for name, text in methods.items()])
        return
    width = max(map(len, methods)) + 2
    for name, text in methods.items():
        typer.echo(f"{name:<{width}}{text}{'  (default)' if name == DEFAULT_METHOD else ''}")
