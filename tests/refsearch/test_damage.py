"""A damaged index says so: every file of a small index is deleted, cut short, zero-filled or has bytes
flipped in turn, and `info`, `query`, `dedup`, `verify` and the server's health each either stop with
one `error:` line naming the file (a 409 JSON error for the server) or, where the damage cannot show,
answer; never a traceback. A header of LMDB's data file naming pages that cannot be mapped is one
`error:` line too. Built with the tiny backbone."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
from pathlib import Path

import httpx
import pytest
from index_checks import as_format_2
from typer.testing import CliRunner

import refsearch
from refsearch import layout
from refsearch.cli import app
from refsearch.errors import IndexDamagedError
from refsearch.server import create_app
from refsearch.verify import verify_index
from refsearch.wording import count

FAILS, PASSES, EITHER = "fails naming the file", "passes", "passes, or fails naming the file"


def _delete(path: Path) -> None:
    path.unlink()


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _zero_fill(path: Path) -> None:
    path.write_bytes(bytes(path.stat().st_size))


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for at in range(middle, min(len(data), middle + 16)):
        data[at] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGES = {"delete": _delete, "truncate": _truncate, "zero-fill": _zero_fill, "flip": _flip}


def _kind(relative: str) -> str:
    name = Path(relative).name
    if name in (layout.SKIPPED_REPORT, layout.LOCK, layout.LOCK_MDB):
        return "unread"  # a report and lock files: no reader depends on what they hold
    if name == layout.MANIFEST:
        return "manifest"
    if name in (layout.PROJECTIONS, layout.IDS) or name.startswith(("classes.", "tombstones.")):
        return "read whole"  # checksummed when read
    if name == layout.GLOBAL_FAISS:
        return "faiss"
    if name in (layout.CELLS, layout.HISTOGRAMS):
        return "memory-mapped"
    assert name == layout.DATA_MDB, f"a file the test does not know: {relative}"
    return "records"


def _expected(kind: str, damage: str, command: str) -> str:
    """What each command does with a damaged file. Damage that changes a file's size (or removes it) shows
    at once; damage of the same size shows where the file is read: checksums of the files read whole,
    FAISS and LMDB reading their headers, and everything in `verify`. The server's index was opened before
    the damage, and serves what it read then."""
    if kind == "unread":
        return PASSES
    if damage in ("delete", "truncate"):
        return FAILS
    if command == "verify":
        # LMDB pages keep free space that no reader or verifier can tell from data
        return EITHER if (kind, damage) == ("records", "flip") else FAILS
    if kind == "manifest":
        return FAILS
    if kind == "read whole":
        return PASSES if command == "health" else FAILS
    if kind == "faiss":
        return FAILS if damage == "zero-fill" and command in ("query", "dedup") else EITHER
    if kind == "records":
        return FAILS if damage == "zero-fill" and command != "health" else EITHER
    return PASSES  # memory-mapped arrays: only their checksums tell


@pytest.fixture(scope="module")
def built(tmp_path_factory, demo_photos, demo_queries):
    """An index holding every kind of file: a compacted segment (with its ids) and a later one,
    tombstones, and a skipped file."""
    root = tmp_path_factory.mktemp("damage")
    photos = root / "photos"
    photos.mkdir()
    for photo in demo_photos[:7]:
        shutil.copy2(photo, photos / photo.name)
    (photos / "broken.jpg").write_bytes(b"not an image")
    index = root / "whole.index"

    def build():
        refsearch.build_index(photos, index, refsearch.IndexConfig(backbone="tiny-test", pca_images=6, global_dim=8,
                                                                   cell_dim=8), batch_size=4, workers=0, streams=1,
                              progress=False)

    build()
    refsearch.remove_images(index, [1])
    refsearch.compact_index(index)
    for photo in demo_photos[7:10]:
        shutil.copy2(photo, photos / photo.name)
    build()
    refsearch.remove_images(index, [2])
    files = sorted(str(p.relative_to(index)) for p in index.rglob("*") if p.is_file())
    kinds = {_kind(f) for f in files}
    assert kinds == {"unread", "manifest", "read whole", "faiss", "memory-mapped", "records"}
    assert any(f.endswith(layout.IDS) for f in files) and any(f.startswith("tombstones.") for f in files)
    return index, files, demo_queries[0], photos


def _outcome(code: int, error_lines: list[str], file: Path, relative: str) -> str:
    if code == 0:
        return PASSES
    named = len(error_lines) == 1 and (str(file) in error_lines[0] or relative in error_lines[0])
    return FAILS if code == 2 and named else f"exit {code}, error lines {error_lines}"


def _cli(*args) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, [line for line in result.stderr.splitlines() if line.startswith("error:")], result.stderr


def _health(index: refsearch.Index) -> tuple[int, list[str], str]:
    async def get():
        transport = httpx.ASGITransport(app=create_app(index))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return await http.get("/api/health")

    response = asyncio.run(get())
    assert response.status_code in (200, 409), response.text
    return (0 if response.status_code == 200 else 2), [f"error: {response.json().get('error')}"], response.text


@pytest.mark.parametrize("damage", DAMAGES)
def test_every_file_damaged_gives_one_error_line_naming_it_or_does_not_matter(damage, built, tmp_path):
    index, files, query, _ = built
    wrong = []
    for number, relative in enumerate(files):
        copy = tmp_path / f"{number}.index"
        shutil.copytree(index, copy)
        target = copy / relative
        served = refsearch.Index.open(copy)
        try:
            DAMAGES[damage](target)
            runs = {"info": _cli("info", "--index", copy), "query": _cli("query", query, "-k", 3, "--index", copy),
                    "dedup": _cli("dedup", "--index", copy), "verify": _cli("verify", "-q", "--index", copy),
                    "health": _health(served)}
        finally:
            served.close()
        for command, (code, errors, output) in runs.items():
            expected = _expected(_kind(relative), damage, command)
            got = _outcome(code, errors, target, relative)
            if got != expected and not (expected == EITHER and got in (PASSES, FAILS)):
                wrong.append(f"{relative} {command}: expected {expected}, got {got}\n{output[-600:]}")
        shutil.rmtree(copy)
    assert not wrong, "\n".join(wrong)


# LMDB's header (64-bit layout), in both meta pages: after a 16-byte page header, the page size (a u32) at
# 40 and the last page's number (a u64) at 136.
@pytest.mark.parametrize("field, value", [("<I", 1 << 31), ("<Q", 1 << 40), ("<Q", (1 << 52) - 1)],
                         ids=["page size", "last page unmappable", "last page wrapping around"])
def test_a_data_file_whose_header_names_impossible_pages_gives_one_error_line(field, value, built, tmp_path):
    index, _, query, _ = built
    copy = shutil.copytree(index, tmp_path / "copy.index")
    relative = f"{layout.METADATA}/{layout.DATA_MDB}"
    data = bytearray((copy / relative).read_bytes())
    page_size = struct.unpack_from("<I", data, 40)[0]
    for meta in (0, page_size):
        struct.pack_into(field, data, meta + (40 if field == "<I" else 136), value)
    (copy / relative).write_bytes(bytes(data))
    for args in (["info"], ["query", query, "-k", 3], ["verify", "-q"]):
        code, errors, output = _cli(*args, "--index", copy)
        assert _outcome(code, errors, copy / relative, relative) == FAILS, output


def test_verify_reports_a_sound_index_and_every_damaged_file_at_once(built, tmp_path):
    index, files, _, _ = built
    report = verify_index(index)
    assert report.sound and report.files == sum(_kind(f) not in ("unread", "manifest", "records") for f in files)
    assert report.bytes_read == sum((index / f).stat().st_size for f in files
                                    if _kind(f) not in ("unread", "manifest", "records"))
    copy = shutil.copytree(index, tmp_path / "copy.index")
    cells = next(f for f in files if f.endswith(layout.CELLS))
    classes = next(f for f in files if f.startswith("classes."))
    _flip(copy / cells)
    _delete(copy / classes)
    result = CliRunner().invoke(app, ["verify", "--json", "-q", "--index", str(copy)])
    assert result.exit_code == 2
    reported = json.loads(result.stdout)
    assert not reported["sound"] and {d["file"] for d in reported["damaged"]} == {cells, classes}
    assert result.stderr.count("error:") == 1 and cells in result.stderr and classes in result.stderr


def test_records_that_disagree_with_the_segments_and_statistics_are_found(built, tmp_path):
    index, _, _, _ = built
    copy = shutil.copytree(index, tmp_path / "copy.index")
    from refsearch.manifest import Manifest
    from refsearch.store import MetadataWriter

    manifest = Manifest.load(copy)
    writer = MetadataWriter(copy / layout.METADATA, Path(manifest.source), manifest.generation, create=False)
    victim = next(iter(writer.records()))
    writer.purge([victim.id])  # a record lost: LMDB is sound, its contents are not
    writer.close()
    report = verify_index(copy)
    problems = {(d.file, d.problem.split(" (")[0]) for d in report.damaged}
    data = f"{layout.METADATA}/{layout.DATA_MDB}"
    assert (data, f"holds {count(manifest.images - 1, 'record')} of generation {manifest.generation} where the manifest "
                  f"lists {manifest.images}") in problems
    assert (data, "lacks the records of 1 stored row") in problems
    assert any(f == manifest.files["class_stats"].name and "disagrees with the records" in p for f, p in problems)


def test_a_format_2_index_opens_and_verify_says_what_it_could_not_check(built, tmp_path):
    index, files, query, _ = built
    copy = shutil.copytree(index, tmp_path / "old.index")
    manifest_file = copy / layout.MANIFEST
    manifest_file.write_text(json.dumps(as_format_2(json.loads(manifest_file.read_text()))))
    with refsearch.Index.open(copy) as opened:
        assert len(opened.search(query, k=3, any_class=True)) == 3
    report = verify_index(copy)
    assert report.sound and "(written by index format 2), so only presence and size were checked" in report.notes[0]
    # sizes are still known for the arrays from their rows; the next removal records the generation's files
    cells = next(f for f in files if f.endswith(layout.CELLS))
    _truncate(copy / cells)
    with pytest.raises(IndexDamagedError, match=f"{cells} holds"):
        refsearch.Index.open(copy)


def test_a_writer_refuses_a_damaged_index_and_rebuild_replaces_it(built, tmp_path, tiny_config):
    index, files, query, photos = built
    copy = shutil.copytree(index, tmp_path / "copy.index")
    classes = next(f for f in files if f.startswith("classes."))
    _zero_fill(copy / classes)
    for write in (lambda: refsearch.build_index(photos, copy, tiny_config, progress=False),
                  lambda: refsearch.remove_images(copy, [3]), lambda: refsearch.compact_index(copy)):
        with pytest.raises(IndexDamagedError, match=f"{classes} has changed since it was written"):
            write()
    summary = refsearch.build_index(photos, copy, tiny_config, rebuild=True, batch_size=4, workers=0,
                                    progress=False)
    assert summary.images == 10 and verify_index(copy).sound
