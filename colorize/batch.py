"""A folder in, a folder out: every image under the input folder colorized to the same relative path
under the output folder, as PNG; unusable files are reported and skipped, not fatal."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from refsearch.images import ImageError, scan_images

from .base import ColorizeError, ColorizeResult
from .sheet import contact_sheet


@dataclass(frozen=True)
class Colorized:
    """What became of one input (the result itself is not kept: a folder may be large)."""

    source: Path
    output: Path
    sheet: Path | None
    method: str
    references: list[tuple[str, float | None]]
    mean_confidence: float
    seconds: float
    notes: list[str]
    hints: dict  # the photo's size and the colour points applied, as colorize.Hints.to_dict gives them


@dataclass
class FolderSummary:
    done: list[Colorized] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def save_result(result: ColorizeResult, source: Path, output: Path, sheet: Path | None) -> Colorized:
    output.parent.mkdir(parents=True, exist_ok=True)
    result.image.save(output)
    if sheet is not None:
        sheet.parent.mkdir(parents=True, exist_ok=True)
        contact_sheet(result).save(sheet)
    return Colorized(source, output, sheet, result.method, [(r.name, r.score) for r in result.references],
                     float(result.confidence.mean()), result.seconds, list(result.notes),
                     result.hints.with_size(result.image.size).to_dict())


def colorize_folder(input_root: Path, output_root: Path, colorize_one: Callable[[Path], ColorizeResult],
                    sheet_root: Path | None = None, progress: bool = True) -> FolderSummary:
    """Run `colorize_one` on each image under `input_root`, saving `<output_root>/<relative path>.png` and,
    with `sheet_root`, a contact sheet `<sheet_root>/<relative folder>/<name>_sheet.png`."""
    input_root = input_root.resolve()
    scan = scan_images(input_root)
    files = [f.path for f in scan.files]
    if not files:
        raise FileNotFoundError(f"{input_root}: no images found (jpg, jpeg, png, webp, bmp, tif)")
    summary = FolderSummary(failed=[(entry.path, f"{entry.path}: {entry.reason}") for entry in scan.unusable])
    for path in tqdm(files, desc="colorize", unit="image", disable=not progress):
        try:
            result = colorize_one(path)
        except (ImageError, ColorizeError) as exc:
            summary.failed.append((path, str(exc)))
            continue
        relative = path.relative_to(input_root)
        sheet = None if sheet_root is None else sheet_root / relative.parent / f"{path.stem}_sheet.png"
        summary.done.append(save_result(result, path, (output_root / relative).with_suffix(".png"), sheet))
    return summary
