"""A disk that fills up during a build, an update, a removal or a compaction: the writer stops with
DiskFullError (one `error:` line on the command line), the last published generation keeps answering,
and the same command run again once there is room ends as an uninterrupted run does. On a small tmpfs
the test mounts (as root; skipped where mounting is refused), filled to leave little room; built with
the tiny backbone."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from filesystems import fill, mounted_tmpfs
from index_checks import assert_same_state, clean_build, finish, index_state, photo_folder
from typer.testing import CliRunner

import refsearch
from refsearch.cli import app
from refsearch.errors import DiskFullError, IndexStateError
from refsearch.manifest import Manifest


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    with mounted_tmpfs(tmp_path_factory.mktemp("disk"), "8m") as folder:
        yield folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory, demo_photos):
    return photo_folder(tmp_path_factory.mktemp("full") / "photos", demo_photos[:11])


@pytest.fixture(scope="module")
def clean(photos, tmp_path_factory):
    """An uninterrupted build of the photos (on an ordinary disk), its state and its size."""
    output, state = clean_build(photos, tmp_path_factory.mktemp("clean") / "clean.index")
    return output, state, sum(p.stat().st_size for p in output.rglob("*") if p.is_file())


def _stopped_and_resumed(disk: Path, job: dict, leave: int, queries: list[Path], run=finish) -> None:
    """Run `job` on a disk with `leave` bytes free: it must stop with DiskFullError and leave the last
    published generation answering as before; then rerun it with the room back."""
    index = Path(job["index"])
    before = index_state(index, queries) if Manifest.exists(index) and Manifest.load(index).images else None
    filler = fill(disk, leave)
    try:
        with pytest.raises(DiskFullError, match="disk is full where .* is written .*MB free"):
            run(job)
        if before is not None:
            assert_same_state(index_state(index, queries), before)
        elif Manifest.exists(index):  # nothing published yet: an empty index, or one that says so
            try:
                with refsearch.Index.open(index) as opened:
                    assert len(opened) == 0
            except IndexStateError as exc:
                assert "nothing is published yet" in exc.message
    finally:
        filler.unlink()
    run(job)


@pytest.mark.parametrize("share", [0.15, 0.25, 0.29, 0.31, 0.35, 0.45, 0.8])
def test_a_build_that_fills_the_disk_stops_and_resumes_to_the_same_index(share, disk, photos, clean):
    """With these shares of what the finished index takes left free, the build stopped (on this tmpfs,
    when written) at the store's creation, the PCA sample, the projections, segment rows, a record
    commit, the FAISS file and the class statistics."""
    index = disk / "build.index"
    try:
        queries = sorted(photos.iterdir())[::4]
        _stopped_and_resumed(disk, {"op": "build", "source": str(photos), "index": str(index)},
                             int(share * clean[2]), queries)
        assert_same_state(index_state(index, queries), clean[1])
        assert not (index / "pca-sample").exists()
    finally:
        shutil.rmtree(index, ignore_errors=True)


def test_an_update_that_fills_the_disk_stops_and_resumes(disk, photos, demo_photos, tmp_path):
    source = tmp_path / "photos"
    shutil.copytree(photos, source)
    index = disk / "update.index"
    job = {"op": "build", "source": str(source), "index": str(index)}
    try:
        finish(job)
        # 4 added and 1 deleted with 4 KB free stop at segment rows; 2 more with 48 KB free, at the FAISS file
        for added, leave in ((demo_photos[11:15], 4 << 10), (demo_photos[15:17], 48 << 10)):
            for photo in added:
                shutil.copy2(photo, source / photo.name)
            if leave == 4 << 10:
                sorted(source.iterdir())[0].unlink()
            reference = shutil.copytree(index, tmp_path / f"reference{leave}.index")
            finish({**job, "index": str(reference)})
            queries = sorted(source.iterdir())[::4]
            _stopped_and_resumed(disk, job, leave, queries)
            assert_same_state(index_state(index, queries), index_state(reference, queries))
    finally:
        shutil.rmtree(index, ignore_errors=True)


def _cli(job: dict) -> None:
    """remove or compact through the command line: a full disk is one `error:` line and exit 2."""
    args = ["remove", *map(str, job["ids"])] if job["op"] == "remove" else ["compact"]
    result = CliRunner().invoke(app, [*args, "--index", job["index"]])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    if result.exit_code == 2 and len(errors) == 1 and "disk is full" in errors[0]:
        raise DiskFullError(errors[0].removeprefix("error: "))
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)


def test_a_removal_and_a_compaction_that_fill_the_disk_stop_and_resume(disk, clean, tmp_path):
    index = disk / "remove.index"
    try:
        shutil.copytree(clean[0], index)
        with refsearch.Index.open(index) as opened:
            removed = {opened.record(i).path for i in (1, 4)}
        queries = [Path(p) for p in clean[1][0][::4] if p not in removed]
        _stopped_and_resumed(disk, {"op": "remove", "index": str(index), "ids": [1, 4]}, 4 << 10, queries, _cli)
        after = index_state(index, queries)
        assert after[0] == sorted(set(clean[1][0]) - removed)
        _stopped_and_resumed(disk, {"op": "compact", "index": str(index)}, 16 << 10, queries, _cli)
        assert_same_state(index_state(index, queries), after)
        assert Manifest.load(index).tombstones == 0
    finally:
        shutil.rmtree(index, ignore_errors=True)
