"""The Ray engines on a local Ray of two CPUs: the same index as the local engine, a worker that dies
mid-build, resuming, and the command line; batch queries that write the local engine's lines, resume,
survive a worker that dies, and raise the errors workers meet as the local engine raises them."""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray engine's tests need the [ray] extra")
import tiny_backbone  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import refsearch  # noqa: E402
from refsearch.backbones import register_backbone  # noqa: E402
from refsearch.batch_query import query_folder  # noqa: E402
from refsearch.cli import app  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # Ray's workers cannot import the test modules: ship the test backbones' code along with them.
    ray.cloudpickle.register_pickle_by_value(tiny_backbone)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _photos(tmp_path, copy_photos, write_image, count=12) -> Path:
    folder = tmp_path / "photos"
    photos = copy_photos(folder, count)
    (folder / "notes.jpg").write_text("not a photo\n")
    (folder / "truncated.jpg").write_bytes(photos[0].read_bytes()[:2000])
    write_image("tiny.png", size=(2, 2), folder=folder)  # unusual but usable
    return folder


def _records(index) -> dict:
    return {r.path: (r.label, r.label_source, r.prediction, r.digest, r.width, r.height) for r in index.records()}


def _assert_same_index(built, reference, queries):
    with refsearch.Index.open(built) as a, refsearch.Index.open(reference) as b:
        assert _records(a) == _records(b)
        assert (Path(built) / "skipped.tsv").read_text() == (Path(reference) / "skipped.tsv").read_text()
        paths_a = {r.id: r.path for r in a.records()}
        paths_b = {r.id: r.path for r in b.records()}
        ids_a, vectors_a = a.global_vectors()
        ids_b, vectors_b = b.global_vectors()
        by_path_a = dict(zip((paths_a[i] for i in ids_a.tolist()), vectors_a))
        by_path_b = dict(zip((paths_b[i] for i in ids_b.tolist()), vectors_b))
        for path, vector in by_path_b.items():
            other = by_path_a[path]
            cosine = float(vector @ other / (np.linalg.norm(vector) * np.linalg.norm(other)))
            assert cosine > 1 - 1e-3, path
        for query in queries:
            got, want = a.search(query, k=10, any_class=True), b.search(query, k=10, any_class=True)
            assert [r.path for r in got] == [r.path for r in want]


def test_a_ray_build_equals_a_local_build(tmp_path, copy_photos, write_image, tiny_build):
    photos = _photos(tmp_path, copy_photos, write_image)
    on_ray = tiny_build(photos, tmp_path / "ray.index", engine="ray", engine_options={"actors": 2})
    local = tiny_build(photos, tmp_path / "local.index")
    assert (on_ray.added, on_ray.skipped) == (local.added, local.skipped) == (13, 2)
    _assert_same_index(tmp_path / "ray.index", tmp_path / "local.index", sorted(photos.glob("*.JPEG"))[:3])


class _DiesOnce(tiny_backbone.TinyBackbone):
    """The tiny backbone, but the first process to run it exits in its first forward pass, as a worker
    killed mid-build would (the marker file says it happened). Its tests run on torch: an exported graph
    would not call back into this class."""

    def __init__(self, weights=None, marker: str = ""):
        super().__init__(weights)
        self.marker = marker

    def features(self, x, feature_maps=False):
        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)
        return super().features(x, feature_maps)


def test_a_worker_killed_mid_build_is_retried_and_the_build_ends_correct(tmp_path, copy_photos, write_image,
                                                                        tiny_config, tiny_build):
    photos = _photos(tmp_path, copy_photos, write_image)
    marker = tmp_path / "a worker died"
    register_backbone("tiny-dies-once")(functools.partial(_DiesOnce, marker=str(marker)))
    config = tiny_config.with_(backbone="tiny-dies-once")
    summary = refsearch.build_index(photos, tmp_path / "ray.index", config, batch_size=2, progress=False,
                                    engine="ray", engine_options={"actors": 1}, runtime="torch")
    assert marker.exists()
    assert summary.added == 13
    refsearch.build_index(photos, tmp_path / "local.index", config, batch_size=2, workers=0, streams=1,
                          progress=False)
    _assert_same_index(tmp_path / "ray.index", tmp_path / "local.index", sorted(photos.glob("*.JPEG"))[:2])


def test_a_ray_build_skips_what_is_already_committed(tmp_path, copy_photos, demo_photos, tiny_build):
    copy_photos(tmp_path / "photos", 6)
    tiny_build(tmp_path / "photos", tmp_path / "x.index")
    copy_photos(tmp_path / "photos", demo_photos[6:10])
    summary = tiny_build(tmp_path / "photos", tmp_path / "x.index", engine="ray")
    assert (summary.added, summary.unchanged, summary.images) == (4, 6, 10)


def test_build_index_engine_ray_on_the_command_line(tmp_path, copy_photos):
    copy_photos(tmp_path / "photos", 4)
    result = CliRunner().invoke(app, ["build-index", str(tmp_path / "photos"), "-o", str(tmp_path / "x.index"),
                                      "--backbone", "tiny-test", "--global-dim", "8", "--cell-dim", "8",
                                      "--engine", "ray", "--actors", "1", "--json", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 4
    refused = CliRunner().invoke(app, ["build-index", str(tmp_path / "photos"), "-o", str(tmp_path / "y.index"),
                                       "--actors", "2"])
    assert refused.exit_code == 2
    assert refused.stderr == "error: --address and --actors are options of --engine ray\n"
    refused = CliRunner().invoke(app, ["build-index", str(tmp_path / "photos"), "-o", str(tmp_path / "y.index"),
                                       "--engine", "ray", "--workers", "2"])
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: --workers and --streams are options of the local engine\nhint: ")


def _queries(tmp_path, demo_photos) -> Path:
    folder = tmp_path / "queries"
    folder.mkdir()
    for photo in demo_photos[20:26]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    (folder / "truncated.jpg").write_bytes(demo_photos[20].read_bytes()[:2000])
    (folder / "empty.jpg").write_bytes(b"")
    return folder


def _answers(path: Path) -> list[dict]:
    """The lines of a batch-query file, less their timings."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        line.pop("forward_ms", None), line.pop("search_ms", None)
    return lines


def test_a_ray_batch_query_writes_the_local_engines_lines_and_resumes(tmp_path, copy_photos, demo_photos,
                                                                     tiny_build):
    copy_photos(tmp_path / "photos", 12)
    tiny_build(tmp_path / "photos", tmp_path / "x.index")
    queries = _queries(tmp_path, demo_photos)
    with refsearch.Index.open(tmp_path / "x.index") as index:
        local = query_folder(index, [queries], tmp_path / "local.jsonl", k=4, batch_size=3, progress=False,
                             any_class=True)
        on_ray = query_folder(index, [queries], tmp_path / "ray.jsonl", k=4, batch_size=3, progress=False,
                              engine="ray", engine_options={"actors": 2}, any_class=True)
        assert (on_ray.answered, on_ray.failed) == (local.answered, local.failed) == (8, 2)
        expected = _answers(tmp_path / "local.jsonl")
        assert _answers(tmp_path / "ray.jsonl") == expected
        errors = {line["query"]: line["error"] for line in expected if "error" in line}
        assert sorted(errors) == [str(queries.resolve() / name) for name in ("empty.jpg", "truncated.jpg")]
        assert all(error.startswith(query + ": ") for query, error in errors.items())

        written = (tmp_path / "ray.jsonl").read_text().splitlines(keepends=True)
        (tmp_path / "ray.jsonl").write_text("".join(written[:3]) + written[3][:40])  # stopped mid-line
        resumed = query_folder(index, [queries], tmp_path / "ray.jsonl", k=4, batch_size=3, progress=False,
                               engine="ray", any_class=True)
        assert (resumed.answered, resumed.already_done) == (5, 3)
        assert _answers(tmp_path / "ray.jsonl") == expected


def test_a_worker_killed_mid_query_is_retried_and_every_photo_answered(tmp_path, copy_photos, demo_photos,
                                                                      tiny_config):
    marker = tmp_path / "a worker died"
    marker.touch()  # the build, here, must not die
    register_backbone("tiny-dies-once-queries")(functools.partial(_DiesOnce, marker=str(marker)))
    photos = copy_photos(tmp_path / "photos", 8)
    refsearch.build_index(tmp_path / "photos", tmp_path / "x.index", tiny_config.with_(backbone="tiny-dies-once-queries"),
                          batch_size=2, workers=0, streams=1, progress=False, runtime="torch")
    marker.unlink()
    with refsearch.Index.open(tmp_path / "x.index", runtime="torch") as index:
        summary = query_folder(index, photos[:5], tmp_path / "ray.jsonl", k=3, batch_size=2, progress=False,
                               engine="ray", engine_options={"actors": 1})
        assert marker.exists()
        assert (summary.answered, summary.failed) == (5, 0)
        query_folder(index, photos[:5], tmp_path / "local.jsonl", k=3, batch_size=2, progress=False)
    assert _answers(tmp_path / "ray.jsonl") == _answers(tmp_path / "local.jsonl")


def test_query_engine_ray_on_the_command_line(tmp_path, copy_photos, demo_photos, tiny_build):
    copy_photos(tmp_path / "photos", 6)
    tiny_build(tmp_path / "photos", tmp_path / "x.index")
    queries = _queries(tmp_path, demo_photos)
    result = CliRunner().invoke(app, ["query", str(queries), "--index", str(tmp_path / "x.index"), "-k", "2",
                                      "--jsonl", str(tmp_path / "out.jsonl"), "--engine", "ray", "--actors", "1",
                                      "--json", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["queries"], summary["answered"], summary["failed"]) == (8, 8, 2)
    assert len(_answers(tmp_path / "out.jsonl")) == 8


def test_an_error_in_an_actor_is_the_error_the_local_engine_raises(tmp_path, copy_photos, tiny_build):
    photos = copy_photos(tmp_path / "photos", 1)
    tiny_build(tmp_path / "photos", tmp_path / "x.index")
    with refsearch.Index.open(tmp_path / "x.index") as index:
        for engine in ("local", "ray"):
            with pytest.raises(refsearch.errors.IndexStateError, match="no image other than the query itself"):
                query_folder(index, photos, tmp_path / f"{engine}.jsonl", k=1, progress=False, engine=engine,
                             exclude_self=True)


def test_actors_that_cannot_open_the_index_raise_its_error(tmp_path, copy_photos, tiny_build):
    from refsearch.engines import create_query_engine

    photos = copy_photos(tmp_path / "photos", 3)
    tiny_build(tmp_path / "photos", tmp_path / "x.index")
    with refsearch.Index.open(tmp_path / "x.index") as index:
        engine = create_query_engine("ray", index, refsearch.SearchRequest(k=2), 2, 0, 1, actors=1)
        (tmp_path / "x.index").rename(tmp_path / "elsewhere.index")  # as on a worker that cannot see it
        with pytest.raises(refsearch.errors.IndexStateError, match="x.index: no such index"):
            list(engine.answer(photos))


def test_actors_refuse_a_generation_other_than_the_callers(tmp_path, copy_photos, demo_photos, tiny_build):
    copy_photos(tmp_path / "photos", 3)
    tiny_build(tmp_path / "photos", tmp_path / "x.index")
    with refsearch.Index.open(tmp_path / "x.index") as index:
        copy_photos(tmp_path / "photos", demo_photos[3:4])
        tiny_build(tmp_path / "photos", tmp_path / "x.index")  # published while the query's index is open
        with pytest.raises(refsearch.errors.IndexStateError, match=f"generation {index.generation}"):
            query_folder(index, [tmp_path / "photos"], tmp_path / "ray.jsonl", k=2, progress=False, engine="ray")


class _LoadsOnlyInTheDriver(tiny_backbone.TinyBackbone):
    """The tiny backbone, whose weights only the test's own process can find, as on a worker that does
    not see the weights file. (On the inference runtime a worker loads the graph the driver cached and
    never needs the weights: its test runs on torch.)"""

    def __init__(self, weights=None, driver: int = 0):
        if os.getpid() != driver:
            raise refsearch.errors.InvalidArgumentError("weights.pt: no such weights file", "copy it to the workers")
        super().__init__(weights)


def test_a_build_whose_actors_cannot_load_the_backbone_raises_its_error(tmp_path, copy_photos, tiny_config):
    copy_photos(tmp_path / "photos", 4)
    register_backbone("tiny-driver-only")(functools.partial(_LoadsOnlyInTheDriver, driver=os.getpid()))
    with pytest.raises(refsearch.errors.InvalidArgumentError, match="weights.pt: no such weights file"):
        refsearch.build_index(tmp_path / "photos", tmp_path / "x.index", tiny_config.with_(backbone="tiny-driver-only"),
                              progress=False, engine="ray", engine_options={"actors": 1}, runtime="torch")


class _FailsSecondBatch(tiny_backbone.TinyBackbone):
    """The tiny backbone, whose second forward pass in each worker raises `error` (the test's own process
    runs it freely). Its tests run on torch: an exported graph would not call back into this class."""

    def __init__(self, weights=None, driver: int = 0, error: Exception | None = None):
        super().__init__(weights)
        self.driver, self.error, self.passes = driver, error, 0

    def features(self, x, feature_maps=False):
        self.passes += 1
        if os.getpid() != self.driver and self.passes == 2:
            raise self.error
        return super().features(x, feature_maps)


@pytest.mark.parametrize("error", [refsearch.errors.InvalidArgumentError("a batch the network refuses"),
                                   PermissionError(13, "Permission denied", "weights.pt")])
def test_a_batch_failing_beside_answered_ones_in_its_block_raises_its_error(tmp_path, copy_photos, tiny_config,
                                                                            error):
    copy_photos(tmp_path / "photos", 8)
    name = f"tiny-fails-second-{type(error).__name__}"
    register_backbone(name)(functools.partial(_FailsSecondBatch, driver=os.getpid(), error=error))
    with pytest.raises(type(error), match=str(error.args[-1]) if isinstance(error, OSError) else str(error)):
        refsearch.build_index(tmp_path / "photos", tmp_path / "x.index", tiny_config.with_(backbone=name),
                              batch_size=2, progress=False, engine="ray", engine_options={"actors": 1},
                              runtime="torch")
