"""Subsets of an index and their export as copies, symbolic links or a list of paths.

An export is written under a temporary name beside its destination and renamed into place only when
complete, so a failure (a missing file, a full disk, Ctrl-C) leaves nothing half-written behind.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import classes
from ..errors import InvalidArgumentError
from ..store import ImageRecord

EXPORT_MODES = ("copy", "symlink", "list")
EXPORT_LAYOUTS = ("relative", "flat")


@dataclass(frozen=True)
class ExportSummary:
    destination: str
    mode: str
    layout: str
    files: int
    bytes: int  # the exported images' size, as indexed
    dry_run: bool = False  # checked, and nothing written


class Subset:
    """Some images of an index, by id (in the order given, each once), ready to export."""

    def __init__(self, read_records: Callable[[Iterable[int]], list[ImageRecord]], source_root: str | os.PathLike,
                 ids: Iterable[int]):
        self._read_records = read_records
        self.source_root = Path(source_root)
        self.ids: tuple[int, ...] = tuple(dict.fromkeys(int(i) for i in ids))
        self._records: list[ImageRecord] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids)

    def __repr__(self) -> str:
        return f"Subset({len(self)} images of {str(self.source_root)!r})"

    def records(self) -> list[ImageRecord]:
        """The subset's records; NotFoundError for an id the index does not hold."""
        if self._records is None:
            self._records = self._read_records(self.ids)
        return self._records

    def paths(self) -> list[str]:
        return [record.path for record in self.records()]

    def to_records(self) -> list[dict]:
        return [{"id": r.id, "path": r.path, "label": r.label, "width": r.width, "height": r.height,
                 "file_size": r.file_size} for r in self.records()]

    def export(self, destination: str | os.PathLike, mode: str = "copy", *, layout: str = "relative",
               dry_run: bool = False) -> ExportSummary:
        """Write the subset to `destination`, which must not exist yet (an empty folder is fine).

        mode "copy" copies the files and "symlink" links to them, into a folder that keeps their layout
        under the indexed folder (`layout="relative"`) or puts them side by side (`layout="flat"`,
        renaming clashes with the image id, and keeping a label that came from a wnid folder as a wnid
        prefix so that indexing the export finds the same labels). mode "list" writes a text file of
        the absolute paths, one per line. With `dry_run`, everything is checked and nothing written."""
        if mode not in EXPORT_MODES:
            raise InvalidArgumentError(f"unknown export mode {mode!r}; use one of {', '.join(EXPORT_MODES)}")
        if layout not in EXPORT_LAYOUTS:
            raise InvalidArgumentError(f"unknown layout {layout!r}; use one of {', '.join(EXPORT_LAYOUTS)}")
        destination = Path(destination)
        taken = destination.is_dir() and any(destination.iterdir())
        if taken or destination.is_file() or destination.is_symlink():
            raise FileExistsError(f"{destination} already exists; choose a new destination")
        records = self.records()
        missing = [r.path for r in records if not os.path.isfile(r.path)]
        if missing:
            raise FileNotFoundError(f"{len(missing)} indexed files are gone (first: {missing[0]}); "
                                    "rebuild the index or leave them out of the subset")
        summary = ExportSummary(str(destination), mode, layout, len(records),
                                sum(r.file_size for r in records), dry_run)
        if dry_run:
            return summary
        destination.parent.mkdir(parents=True, exist_ok=True)
        temporary = destination.with_name(f".{destination.name}.tmp-{os.getpid()}")
        try:
            if mode == "list":
                with open(temporary, "w") as handle:
                    handle.writelines(f"{r.path}\n" for r in records)
            else:
                _write_tree(records, temporary, self._names(records, layout), mode)
            if destination.is_dir():
                destination.rmdir()  # empty, checked above
            os.replace(temporary, destination)
        except BaseException:
            if temporary.is_dir():
                shutil.rmtree(temporary, ignore_errors=True)
            else:
                temporary.unlink(missing_ok=True)
            raise
        return summary

    def _names(self, records: list[ImageRecord], layout: str) -> list[Path]:
        names: list[Path] = []
        taken: set[str] = set()
        for record in records:
            path = Path(record.path)
            if layout == "relative" and path.is_relative_to(self.source_root):
                name = path.relative_to(self.source_root)
            else:
                name = Path(_flat_name(record))
            if str(name) in taken:
                name = name.with_name(f"{name.stem}-{record.id}{name.suffix}")
            taken.add(str(name))
            names.append(name)
        return names


def _flat_name(record: ImageRecord) -> str:
    name = Path(record.path).name
    if record.label_source == "folder" and classes.label_from_path(Path(name)) != record.label:
        return f"{record.label}_{name}"
    return name


def _write_tree(records: list[ImageRecord], folder: Path, names: list[Path], mode: str) -> None:
    folder.mkdir()
    for record, name in zip(records, names):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "copy":
            shutil.copy2(record.path, target)
        else:
            target.symlink_to(record.path)
