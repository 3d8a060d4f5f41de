"""Engines by name, for builds and for batch queries: the local ones, ones registered by another
package, and the errors."""
from __future__ import annotations

import pytest

import refsearch
from refsearch.batch_query import query_folder
from refsearch.engines import register_engine, register_query_engine
from refsearch.engines.local import LocalEngine, LocalQueryEngine
from refsearch.errors import InvalidArgumentError


class _CountingEngine(LocalEngine):
    """A third-party engine: the local one, counting the files it is given."""

    files_seen: list[str] = []

    def extract(self, files):
        _CountingEngine.files_seen.extend(str(f.path) for f in files)
        return super().extract(files)


@register_engine("counting-test")
def _counting(backbone, request, config, batch_size, workers, streams):
    return _CountingEngine(backbone, config, batch_size, workers, streams)


def test_a_registered_engine_builds_the_index(tmp_path, copy_photos, tiny_build):
    photos = copy_photos(tmp_path / "photos", 4)
    _CountingEngine.files_seen.clear()
    summary = tiny_build(tmp_path / "photos", tmp_path / "x.index", engine="counting-test")
    assert summary.added == 4
    assert sorted(_CountingEngine.files_seen) == sorted(str(p.resolve()) for p in photos)


def test_an_unknown_engine_or_option_is_refused_before_anything_is_written(tmp_path, copy_photos, tiny_build):
    copy_photos(tmp_path / "photos", 2)
    with pytest.raises(InvalidArgumentError, match="unknown engine 'spark'") as error:
        tiny_build(tmp_path / "photos", tmp_path / "x.index", engine="spark")
    assert "local" in error.value.hint and "ray" in error.value.hint
    with pytest.raises(InvalidArgumentError, match="engine local does not take these options"):
        tiny_build(tmp_path / "photos", tmp_path / "x.index", engine_options={"actors": 2})
    assert not (tmp_path / "x.index").exists()



class _CountingQueryEngine(LocalQueryEngine):
    """A third-party query engine: the local one, counting the photos it is given."""

    photos_seen: list[str] = []

    def answer(self, photos):
        _CountingQueryEngine.photos_seen.extend(str(p) for p in photos)
        return super().answer(photos)


@register_query_engine("counting-test")
def _counting_queries(index, request, batch_size, workers, streams):
    return _CountingQueryEngine(index, request, batch_size, workers, streams)


def test_a_registered_query_engine_answers_a_batch_query(tmp_path, copy_photos, tiny_build):
    photos = copy_photos(tmp_path / "photos", 4)
    tiny_build(tmp_path / "photos", tmp_path / "x.index")
    _CountingQueryEngine.photos_seen.clear()
    with refsearch.Index.open(tmp_path / "x.index") as index:
        summary = query_folder(index, [tmp_path / "photos"], tmp_path / "out.jsonl", k=2, progress=False,
                               engine="counting-test")
        assert summary.answered == 4
        assert sorted(_CountingQueryEngine.photos_seen) == sorted(str(p.resolve()) for p in photos)
        with pytest.raises(InvalidArgumentError, match="unknown query engine 'spark'"):
            query_folder(index, photos, tmp_path / "other.jsonl", engine="spark", progress=False)
        with pytest.raises(InvalidArgumentError, match="engine local does not take these options"):
            query_folder(index, photos, tmp_path / "other.jsonl", engine_options={"actors": 2}, progress=False)
    assert not (tmp_path / "other.jsonl").exists()


class _MisorderingQueryEngine(LocalQueryEngine):
    """A faulty query engine: its second batch comes back reversed, or never comes back."""

    def __init__(self, *arguments, fault: str):
        super().__init__(*arguments)
        self.fault = fault

    def answer(self, photos):
        for number, lines in enumerate(super().answer(photos)):
            if number == 1:
                if self.fault == "drops":
                    return
                lines = lines[::-1]
            yield lines


@register_query_engine("misordering-test")
def _misordering_queries(index, request, batch_size, workers, streams, fault="reverses"):
    return _MisorderingQueryEngine(index, request, batch_size, workers, streams, fault=fault)


@pytest.mark.parametrize("fault, message", [("reverses", "answered .* where .* were next"),
                                            ("drops", "answered 2 of 4 photos")])
def test_lines_for_other_photos_than_those_next_or_too_few_are_refused(tmp_path, copy_photos, tiny_build, fault,
                                                                       message):
    copy_photos(tmp_path / "photos", 4)
    tiny_build(tmp_path / "photos", tmp_path / "x.index")
    output = tmp_path / "out.jsonl"
    with refsearch.Index.open(tmp_path / "x.index") as index:
        with pytest.raises(RuntimeError, match=f"the misordering-test query engine {message}"):
            query_folder(index, [tmp_path / "photos"], output, k=2, batch_size=2, progress=False,
                         engine="misordering-test", engine_options={"fault": fault})
        assert len(output.read_text().splitlines()) == 2  # the first batch, right; nothing after it
        resumed = query_folder(index, [tmp_path / "photos"], output, k=2, batch_size=2, progress=False)
    assert (resumed.already_done, resumed.answered) == (2, 2)
