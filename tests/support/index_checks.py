"""What tests of interrupted, damaged or older indexes share: running an index job as the crash driver
runs it, an uninterrupted build to compare with, the state an index ends in (its records and some
queries' answers) and comparing two such states, and a manifest rewritten as index format 2 wrote it."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tiny_backbone

import refsearch


def finish(job: dict) -> None:
    """Run a crash-driver job ({"op": "build" | "remove" | "compact", ...}) normally, in this process, with
    the driver's settings."""
    if job["op"] == "build":
        refsearch.build_index(job["source"], job["index"], tiny_backbone.CONFIG, batch_size=2, workers=0,
                              streams=1, progress=False)
    elif job["op"] == "remove":
        refsearch.remove_images(job["index"], job["ids"])
    else:
        refsearch.compact_index(job["index"])


def photo_folder(folder: Path, photos: list[Path]) -> Path:
    """`folder`, made, with copies of `photos`."""
    folder.mkdir(parents=True)
    for photo in photos:
        shutil.copy2(photo, folder / photo.name)
    return folder


def clean_build(photos: Path, output: Path):
    """(output, its state) of an uninterrupted build of `photos`, queried with every fourth photo."""
    finish({"op": "build", "source": str(photos), "index": str(output)})
    return output, index_state(output, sorted(photos.iterdir())[::4])


def index_state(index_path: Path, queries: list[Path]):
    """(sorted paths of the records, each query's top 5 over all classes as (path, score)); fails when an
    image is stored twice."""
    with refsearch.Index.open(index_path) as index:
        paths = [r.path for r in index.records()]
        assert len(paths) == len(set(paths)) == len(index), "an image is stored twice"
        answers = [[(r.path, r.score) for r in index.search(q, k=5, any_class=True)] for q in queries]
        return sorted(paths), answers


def assert_same_state(got, want) -> None:
    assert got[0] == want[0]
    for a, b in zip(got[1], want[1]):
        assert [p for p, _ in a] == [p for p, _ in b]
        np.testing.assert_allclose([s for _, s in a], [s for _, s in b], atol=1e-4)


def as_format_2(data: dict) -> dict:
    """A format-3 manifest (as JSON data) as format 2 wrote it: files named by role, without sizes or
    checksums, projections not named, segments without their files."""
    files = {role: entry["name"] for role, entry in data["files"].items() if role != "projections"}
    segments = [{key: value for key, value in segment.items() if key != "files"} for segment in data["segments"]]
    return {**data, "format_version": 2, "files": files, "segments": segments}
