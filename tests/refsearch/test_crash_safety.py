"""kill -9 at many points of a build, an update, a removal and a compaction, in a real subprocess;
each followed by a normal rerun that must end with one record per file, no duplicates, and the same
query results as a build that was never interrupted. Built with the tiny backbone."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from index_checks import assert_same_state, clean_build, finish, index_state, photo_folder

import refsearch

CRASH_DRIVER = Path(__file__).resolve().parents[1] / "support" / "crash_driver.py"

# (function, call number, before or after the real call): points across the whole write path.
BUILD_POINTS = [
    ("refsearch.build:save_batch", 1, "before"),  # while extracting the PCA sample
    ("refsearch.build:save_batch", 2, "after"),
    ("refsearch.writer:IndexWriter.set_projections", 1, "after"),  # fitted, nothing stored yet
    ("refsearch.segments:SegmentAppender.append", 2, "after"),  # rows written, not committed
    ("refsearch.store:MetadataWriter.add", 1, "after"),  # first sample batch committed
    ("refsearch.store:MetadataWriter.add", 5, "before"),
    ("refsearch.writer:publish_segment", 1, "after"),  # FAISS file written, manifest not
    ("refsearch.manifest:Manifest.save", 2, "after"),  # published, pending not forgotten
    ("refsearch.store:MetadataWriter.forget_pending", 1, "after"),
]
UPDATE_POINTS = [
    ("refsearch.store:MetadataWriter.mark_removed", 1, "after"),
    ("refsearch.store:MetadataWriter.add", 1, "after"),
    ("refsearch.vector_index:ClassStats.save", 1, "after"),
    ("refsearch.manifest:Manifest.save", 1, "before"),
]
REMOVE_POINTS = [
    ("refsearch.store:MetadataWriter.mark_removed", 1, "after"),
    ("refsearch.manifest:Manifest.save", 1, "after"),
]
COMPACT_POINTS = [
    ("refsearch.writer:write_merged", 1, "after"),  # the merged segment written, not published
    ("refsearch.manifest:Manifest.save", 1, "after"),
]


def _crash(job: dict, point) -> None:
    """Run the job in a subprocess that kills itself with SIGKILL at `point`."""
    target, call, when = point
    job = {**job, "target": target, "call": call, "when": when}
    result = subprocess.run([sys.executable, str(CRASH_DRIVER), json.dumps(job)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == -signal.SIGKILL, f"{point} never reached: {result.stderr[-2000:]}"


@pytest.fixture(scope="module")
def photos(tmp_path_factory, demo_photos):
    return photo_folder(tmp_path_factory.mktemp("crash") / "photos", demo_photos[:11])


@pytest.fixture(scope="module")
def clean(photos, tmp_path_factory):
    """An uninterrupted build of the photos, and its state."""
    return clean_build(photos, tmp_path_factory.mktemp("clean") / "clean.index")


@pytest.mark.parametrize("point", BUILD_POINTS, ids=lambda p: f"{p[0].split(':')[1]}-{p[1]}-{p[2]}")
def test_a_build_killed_anywhere_resumes_to_the_same_index(point, photos, clean, tmp_path):
    output = tmp_path / "x.index"
    job = {"op": "build", "source": str(photos), "index": str(output)}
    _crash(job, point)
    finish(job)
    assert_same_state(index_state(output, sorted(photos.iterdir())[::4]), clean[1])
    assert not (output / "pca-sample").exists()


@pytest.fixture(scope="module")
def update(photos, tmp_path_factory, demo_photos):
    """An index of the photos, their folder changed since (4 added, 1 deleted), and that update done
    without interruption."""
    root = tmp_path_factory.mktemp("update")
    source = root / "photos"
    shutil.copytree(photos, source)
    base = root / "base.index"
    finish({"op": "build", "source": str(source), "index": str(base)})
    for photo in demo_photos[11:15]:
        shutil.copy2(photo, source / photo.name)
    sorted(source.iterdir())[0].unlink()
    reference = root / "reference.index"
    shutil.copytree(base, reference)
    finish({"op": "build", "source": str(source), "index": str(reference)})
    queries = sorted(source.iterdir())[::4]
    return source, base, index_state(reference, queries), queries


@pytest.mark.parametrize("point", UPDATE_POINTS, ids=lambda p: f"{p[0].split(':')[1]}-{p[1]}-{p[2]}")
def test_an_update_killed_anywhere_resumes_to_the_same_index(point, update, tmp_path):
    source, base, reference, queries = update
    output = tmp_path / "x.index"
    shutil.copytree(base, output)
    job = {"op": "build", "source": str(source), "index": str(output)}
    _crash(job, point)
    finish(job)
    assert_same_state(index_state(output, queries), reference)


@pytest.mark.parametrize("point", REMOVE_POINTS + COMPACT_POINTS,
                         ids=lambda p: f"{p[0].split(':')[1]}-{p[1]}-{p[2]}")
def test_a_removal_or_compaction_killed_anywhere_leaves_a_whole_index(point, clean, tmp_path):
    output = tmp_path / "x.index"
    shutil.copytree(clean[0], output)
    compacting = point in COMPACT_POINTS
    if compacting:
        finish({"op": "remove", "index": str(output), "ids": [1, 4]})
    before = index_state(output, [])[0]
    job = {"op": "compact", "index": str(output)} if compacting else {"op": "remove", "index": str(output),
                                                                      "ids": [1, 4]}
    _crash(job, point)
    paths, _ = index_state(output, [])  # opens, consistent: the old generation or the new one
    after = sorted(set(clean[1][0]) - _removed(clean[0], [1, 4]))
    assert paths in (before, after)
    finish(job)  # the same command again finishes the job (a removal already published: nothing to do)
    final, answers = index_state(output, [Path(p) for p in clean[1][0][::4]])
    assert final == after
    assert all(len(a) == 5 for a in answers)


def _removed(index_path: Path, ids: list[int]) -> set[str]:
    with refsearch.Index.open(index_path) as index:
        return {index.record(i).path for i in ids}
