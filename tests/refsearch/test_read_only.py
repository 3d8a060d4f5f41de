"""Readers create, lock and change nothing in the index folder: on a writable one, reading leaves every
file as it was (but LMDB's reader table in lock.mdb) and recreates none that is missing; an index on a
read-only file system (a tmpfs the test mounts, then remounts read-only; skipped where mounting is
refused) answers `info`, `query`, `dedup`, `verify` and the server's health and search. Built with the
tiny backbone."""
from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

import httpx
import pytest
from filesystems import mounted_tmpfs, remount
from typer.testing import CliRunner

import refsearch
from refsearch import layout
from refsearch.cli import app
from refsearch.server import create_app

LOCK_MDB = f"{layout.METADATA}/{layout.LOCK_MDB}"


def _files(index: Path) -> dict[str, tuple[int, int, int]]:
    """Every file but LMDB's lock file: (size, modification time, CRC-32)."""
    return {str(p.relative_to(index)): (p.stat().st_size, p.stat().st_mtime_ns, zlib.crc32(p.read_bytes()))
            for p in sorted(index.rglob("*")) if p.is_file() and str(p.relative_to(index)) != LOCK_MDB}


def _read_everything(index: Path, query: Path) -> dict[str, int]:
    """Exit codes of the reading commands, and the server's status codes."""
    codes = {}
    for args in (["info"], ["query", str(query), "-k", "2"], ["dedup"], ["verify", "-q"]):
        result = CliRunner().invoke(app, [*args, "--index", str(index)])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        codes[args[0]] = result.exit_code

    async def serve(opened):
        transport = httpx.ASGITransport(app=create_app(opened))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            health = await http.get("/api/health")
            found = await http.post("/api/search?k=2", files={"image": ("q.jpg", query.read_bytes())})
            return health.status_code, found.status_code

    if codes["info"] == 0:
        with refsearch.Index.open(index) as opened:
            codes["health"], codes["search"] = asyncio.run(serve(opened))
    return codes


@pytest.fixture
def index(tmp_path, copy_photos, tiny_build):
    copy_photos(tmp_path / "photos", 6)
    tiny_build(tmp_path / "photos", tmp_path / "x.index")
    return tmp_path / "x.index"


def test_reading_changes_and_creates_nothing(index, demo_queries):
    before = _files(index)
    assert set(_read_everything(index, demo_queries[0]).values()) == {0, 200}
    assert _files(index) == before

    (index / LOCK_MDB).unlink()
    assert set(_read_everything(index, demo_queries[0]).values()) == {0, 200}
    assert _files(index) == before and not (index / LOCK_MDB).exists()

    (index / layout.METADATA / layout.DATA_MDB).unlink()
    result = CliRunner().invoke(app, ["query", str(demo_queries[0]), "--index", str(index)])
    assert result.exit_code == 2 and f"{layout.METADATA}/{layout.DATA_MDB} is missing" in result.stderr
    assert sorted((index / layout.METADATA).iterdir()) == []


def test_an_index_on_a_read_only_file_system_answers(tmp_path, copy_photos, tiny_build, demo_queries):
    copy_photos(tmp_path / "photos", 6)
    with mounted_tmpfs(tmp_path / "disk", "16m") as disk:
        tiny_build(tmp_path / "photos", disk / "x.index")
        remount(disk, "ro")
        assert _read_everything(disk / "x.index", demo_queries[0]) == {
            "info": 0, "query": 0, "dedup": 0, "verify": 0, "health": 200, "search": 200}
