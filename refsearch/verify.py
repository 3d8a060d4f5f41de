"""`refsearch verify`: whether an index is whole, file by file.

Every file the published generation uses is read and checked against the size and checksum recorded
when it was written. Then what the files say is checked against each other: the records of the
generation (LMDB) against the manifest's count, the class statistics' counts, the ids the segments hold
and the tombstones, and the classes each segment's FAISS file files its ids under; every record's path
must map back to it. LMDB's data file, which every write changes and no generation checksums, is walked
page by page by py-lmdb's offline verifier (unless a writer is at work on it). Each problem names the
file it was found in; a disagreement between files names the one that carries no checksum, or else the
one that disagrees with the records.

Verifying reads every byte of the index once (about 10 GB at 1.28M images); `docs/scale.md` gives its
cost. It only reads.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import classes, layout
from .errors import IndexDamagedError
from .integrity import content_problem
from .lock import is_locked
from .manifest import Manifest
from .store import MetadataReader, RecordColumns
from .vector_index import ClassStats, load_array, read_class_partitioned
from .wording import count

DATA_FILE = f"{layout.METADATA}/{layout.DATA_MDB}"
# Ids quoted in a problem, at most.
_SHOWN = 5


@dataclass(frozen=True)
class Damage:
    file: str  # its path inside the index folder
    problem: str


@dataclass
class VerifyReport:
    index: str
    generation: int | None  # None: the manifest itself is damaged
    images: int | None
    files: int = 0  # files checked
    bytes_read: int = 0
    seconds: float = 0.0
    damaged: list[Damage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return not self.damaged

    def to_dict(self) -> dict:
        return {**asdict(self), "sound": self.sound}


def verify_index(path: str | os.PathLike, *, progress: bool = False) -> VerifyReport:
    """Check every file of the index's published generation, and that they agree (see the module)."""
    started = time.perf_counter()
    path = Path(path)
    try:
        manifest = Manifest.load(path)
    except IndexDamagedError as exc:
        if exc.file is None:
            raise
        return VerifyReport(str(path), None, None, 1, 0, round(time.perf_counter() - started, 2),
                            [Damage(_inside(path, exc.file), exc.problem)])
    report = VerifyReport(str(path), manifest.generation, manifest.images)
    _check_files(path, manifest, report, progress)
    _check_agreement(path, manifest, report)
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def _inside(index: Path, file: Path) -> str:
    return str(Path(file).relative_to(index)) if Path(file).is_relative_to(index) else str(file)


def _check_files(path: Path, manifest: Manifest, report: VerifyReport, progress: bool) -> None:
    records = manifest.file_records()
    total = sum(r.size for r in records.values() if r.crc32 is not None and r.size is not None)
    with tqdm(total=total, unit="B", unit_scale=True, desc="verifying", disable=not progress,
              dynamic_ncols=True) as bar:
        def read(count: int) -> None:
            report.bytes_read += count
            bar.update(count)

        for relative, record in records.items():
            problem = content_problem(path / relative, record, read)
            if problem is not None:
                report.damaged.append(Damage(relative, problem))
    report.files = len(records)
    unrecorded = [name for name, record in records.items() if record.crc32 is None]
    if unrecorded:
        report.notes.append(f"no checksum is recorded for {count(len(unrecorded), 'file')} (written by index format 2), "
                            "so only presence and size were checked; `refsearch compact` records them")


def _check_agreement(path: Path, manifest: Manifest, report: VerifyReport) -> None:
    sound = set(manifest.file_records()) - {d.file for d in report.damaged}
    try:
        metadata = MetadataReader(path / layout.METADATA, Path(manifest.source), manifest.generation)
    except IndexDamagedError as exc:
        report.damaged.append(Damage(DATA_FILE, exc.problem or exc.message))
        return
    try:
        columns, unmapped = metadata.audit()
    except IndexDamagedError as exc:
        report.damaged.append(Damage(DATA_FILE, exc.problem or exc.message))
        return
    finally:
        metadata.close()
    _check_lmdb_structure(path, report)
    if len(columns) != manifest.images:
        report.damaged.append(Damage(DATA_FILE, f"holds {count(len(columns), 'record')} of generation {manifest.generation} "
                                                f"where the manifest lists {manifest.images}"))
    if unmapped:
        report.damaged.append(Damage(DATA_FILE, f"does not map the paths of {count(len(unmapped), 'record')} back to them "
                                                f"(ids {unmapped[:_SHOWN]})"))
    _check_class_stats(path, manifest, columns, sound, report)
    _check_rows(path, manifest, columns, sound, report)
    _check_faiss_files(path, manifest, columns, sound, report)


def _check_lmdb_structure(path: Path, report: VerifyReport) -> None:
    from lmdb.verify import VerifyError, verify

    if is_locked(path):
        report.notes.append(f"a writer is at work on the index, so {DATA_FILE} was not walked page by page; "
                            "rerun when it is done")
        return
    try:
        problems = verify(str(path / layout.METADATA))
    except VerifyError as exc:
        problems = [str(exc)]
    if problems:
        report.damaged.append(Damage(DATA_FILE, f"is not a sound LMDB file: {'; '.join(problems[:3])}"
                                                + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")))


def _check_class_stats(path: Path, manifest: Manifest, columns: RecordColumns, sound: set[str],
                       report: VerifyReport) -> None:
    stats_file = manifest.files.get("class_stats")
    if stats_file is None or stats_file.name not in sound:
        return
    try:
        counted = ClassStats.load(path / stats_file.name, stats_file.record).counts
    except IndexDamagedError as exc:
        report.damaged.append(Damage(stats_file.name, exc.problem or exc.message))
        return
    recorded = np.bincount(columns.labels.astype(np.int64), minlength=classes.num_classes())
    if len(counted) != len(recorded):
        report.damaged.append(Damage(stats_file.name, f"counts {count(len(counted), 'class')}, not {len(recorded)}"))
        return
    differ = np.flatnonzero(counted != recorded)
    if len(differ):
        first = int(differ[0])
        report.damaged.append(Damage(
            stats_file.name, f"disagrees with the records on the sizes of {count(len(differ), 'class')} (first "
            f"{classes.wnids()[first]}: {int(counted[first])} counted, {int(recorded[first])} recorded)"))


def _check_rows(path: Path, manifest: Manifest, columns: RecordColumns, sound: set[str],
                report: VerifyReport) -> None:
    """The segments' ids against the records and the tombstones: every stored row is a record's or
    removed, every record has its row."""
    tomb_file = manifest.files.get("tombstones")
    tombstones = np.empty(0, np.int64)
    if tomb_file is not None:
        if tomb_file.name not in sound:
            return
        tombstones = load_array(path / tomb_file.name, tomb_file.record, 1)
        if len(tombstones) != manifest.tombstones:
            report.damaged.append(Damage(tomb_file.name, f"lists {count(len(tombstones), 'removed image')} where the "
                                                         f"manifest counts {manifest.tombstones}"))
    parts = []
    for segment in manifest.segments:
        if segment.contiguous:
            parts.append(np.arange(segment.first_id, segment.first_id + segment.rows, dtype=np.int64))
        else:
            ids_file = f"{layout.SEGMENTS}/{segment.name}/{layout.IDS}"
            if ids_file not in sound:
                return
            parts.append(np.fromfile(path / ids_file, np.int64))
    stored = np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)
    tombstones = np.sort(tombstones)
    if len(stored) and (np.diff(stored) == 0).any():
        report.damaged.append(Damage(layout.SEGMENTS, "store an id in more than one row"))
    ids = columns.ids  # ascending
    if tomb_file is not None and len(removed_visible := ids[_among(ids, tombstones)]):
        report.damaged.append(Damage(tomb_file.name, f"lists {count(len(removed_visible), 'image')} that the records "
                                                     f"still hold (ids {removed_visible[:_SHOWN].tolist()})"))
    rowless = ids[~_among(ids, stored)]
    if len(rowless):
        report.damaged.append(Damage(DATA_FILE, f"holds {count(len(rowless), 'record')} that no segment stores a row for "
                                                f"(ids {rowless[:_SHOWN].tolist()})"))
    live = stored[~_among(stored, tombstones)]
    orphans = live[~_among(live, ids)]
    if len(orphans):
        report.damaged.append(Damage(DATA_FILE, f"lacks the records of {count(len(orphans), 'stored row')} "
                                                f"(ids {orphans[:_SHOWN].tolist()})"))


def _check_faiss_files(path: Path, manifest: Manifest, columns: RecordColumns, sound: set[str],
                       report: VerifyReport) -> None:
    """Each segment's FAISS file: its ids those of the segment, each filed under its record's class
    (removed images' rows stay in it until compaction, and have no record to compare with)."""
    from faiss.contrib.inspect_tools import get_invlist

    for segment in manifest.segments:
        relative = f"{layout.SEGMENTS}/{segment.name}/{layout.GLOBAL_FAISS}"
        if relative not in sound:
            continue
        try:
            index = read_class_partitioned(path / relative, segment.rows)
        except IndexDamagedError as exc:
            report.damaged.append(Damage(relative, exc.problem or exc.message))
            continue
        ids, lists = [], []
        for number in range(index.nlist):
            if index.invlists.list_size(number):
                found = np.array(get_invlist(index.invlists, number)[0])
                ids.append(found)
                lists.append(np.full(len(found), number, np.int64))
        ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
        lists = np.concatenate(lists) if lists else np.empty(0, np.int64)
        if segment.contiguous:
            expected = np.arange(segment.first_id, segment.first_id + segment.rows, dtype=np.int64)
        elif f"{layout.SEGMENTS}/{segment.name}/{layout.IDS}" in sound:
            expected = np.fromfile(path / layout.SEGMENTS / segment.name / layout.IDS, np.int64)
        else:
            expected = None
        if expected is not None and not np.array_equal(np.sort(ids), np.sort(expected)):
            report.damaged.append(Damage(relative, "holds other ids than its segment's rows"))
            continue
        recorded = _among(ids, columns.ids)
        at = np.searchsorted(columns.ids, ids[recorded])
        misfiled = ids[recorded][columns.labels[at] != lists[recorded]]
        if len(misfiled):
            report.damaged.append(Damage(relative, f"files {count(len(misfiled), 'image')} under another class than "
                                                   f"their records' (ids {misfiled[:_SHOWN].tolist()})"))


def _among(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Which of `values` are in `sorted_set` (ascending): a binary search each."""
    if not len(sorted_set):
        return np.zeros(len(values), bool)
    at = np.searchsorted(sorted_set, values).clip(0, len(sorted_set) - 1)
    return sorted_set[at] == values


__all__ = ["Damage", "VerifyReport", "verify_index"]
