"""Batch queries into JSON Lines: every photo answered once, resumable after a torn write, unreadable
photos as error lines, one writer per output. Built with the tiny backbone."""
from __future__ import annotations

import fcntl
import json

import pytest

import refsearch
from refsearch.batch_query import query_folder
from refsearch.errors import InvalidArgumentError, NotFoundError, OutputLockedError


@pytest.fixture
def index(tmp_path, copy_photos, tiny_build):
    copy_photos(tmp_path / "photos", 10)
    tiny_build(tmp_path / "photos", tmp_path / "tiny.index")
    with refsearch.Index.open(tmp_path / "tiny.index") as opened:
        yield opened


@pytest.fixture
def queries(tmp_path, copy_photos, demo_photos):
    folder = tmp_path / "queries"
    copy_photos(folder / "nested", demo_photos[10:15])
    copy_photos(folder, demo_photos[15:18])
    return sorted(p.resolve() for p in folder.rglob("*.jpg"))


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_photo_of_the_folder_is_answered_once_as_a_single_query_would_be(tmp_path, index, queries):
    output = tmp_path / "out.jsonl"
    summary = query_folder(index, [tmp_path / "queries", queries[0]], output, k=3, batch_size=4, progress=False)
    assert (summary.queries, summary.answered, summary.already_done, summary.failed) == (8, 8, 0, 0)
    lines = _lines(output)
    assert [line["query"] for line in lines] == [str(q) for q in queries]
    for line, query in zip(lines, queries):
        alone = index.search(query, 3)
        assert [r["id"] for r in line["results"]] == [r.id for r in alone.results]
        assert line["predicted"][0]["wnid"] == alone.predicted[0].wnid


def test_a_rerun_answers_only_what_a_stopped_run_left_and_cuts_a_torn_line(tmp_path, index, queries):
    output = tmp_path / "out.jsonl"
    query_folder(index, [tmp_path / "queries"], output, k=2, batch_size=3, progress=False)
    complete = output.read_text().splitlines(keepends=True)
    output.write_text("".join(complete[:3]) + complete[3][:25])  # stopped while writing the fourth line
    summary = query_folder(index, [tmp_path / "queries"], output, k=2, batch_size=3, progress=False)
    assert (summary.answered, summary.already_done) == (5, 3)
    assert sorted(line["query"] for line in _lines(output)) == [str(q) for q in queries]
    again = query_folder(index, [tmp_path / "queries"], output, k=2, progress=False)
    assert (again.answered, again.already_done) == (0, 8) and len(_lines(output)) == 8


def test_an_unreadable_photo_becomes_an_error_line_and_its_batch_is_still_answered_once(tmp_path, index, queries,
                                                                                       monkeypatch):
    broken = tmp_path / "queries" / "broken.jpg"
    broken.write_bytes(queries[0].read_bytes()[:300])
    output = tmp_path / "out.jsonl"
    searched = []
    embed_prepared = index.embed_prepared
    monkeypatch.setattr(index, "embed_prepared", lambda images, prepared: searched.extend(images) or
                        embed_prepared(images, prepared))
    summary = query_folder(index, [tmp_path / "queries"], output, k=2, batch_size=16, progress=False)
    assert sorted(searched) == queries  # the readable photos, each searched once
    assert (summary.queries, summary.answered, summary.failed) == (9, 9, 1)
    errors = [line for line in _lines(output) if "error" in line]
    assert [e["query"] for e in errors] == [str(broken.resolve())] and "broken.jpg" in errors[0]["error"]
    assert sum("results" in line for line in _lines(output)) == 8


def test_one_writer_per_output_and_only_batch_query_files_are_appended_to(tmp_path, index, queries):
    output = tmp_path / "out.jsonl"
    with open(output, "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(OutputLockedError, match="being written by another batch query"):
            query_folder(index, queries, output, progress=False)
    other = tmp_path / "notes.txt"
    other.write_text("shopping list\n")
    with pytest.raises(InvalidArgumentError, match="line 1: not a line a batch query writes"):
        query_folder(index, queries, other, progress=False)
    assert other.read_text() == "shopping list\n"
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        query_folder(index, [tmp_path / "missing"], output, progress=False)
    with pytest.raises(InvalidArgumentError, match="batch size and streams must be at least 1"):
        query_folder(index, queries, output, batch_size=0, progress=False)


def test_a_bad_option_is_refused_before_the_output_is_touched(tmp_path, index, queries):
    output = tmp_path / "out.jsonl"
    with pytest.raises(InvalidArgumentError, match="k must be at least 1"):
        query_folder(index, queries, output, k=0, progress=False)
    with pytest.raises(NotFoundError, match="n99999999"):
        query_folder(index, queries, output, class_wnid="n99999999", progress=False)
    with pytest.raises(InvalidArgumentError, match="streams must be at least 1"):
        query_folder(index, queries, output, streams=0, progress=False)
    assert not output.exists()


def test_decoding_threads_and_streams_change_nothing_but_the_speed(tmp_path, index, queries):
    query_folder(index, queries, tmp_path / "threads.jsonl", k=3, batch_size=3, workers=2, streams=2, progress=False)
    query_folder(index, queries, tmp_path / "here.jsonl", k=3, batch_size=3, workers=0, streams=1, progress=False)
    strip = [{key: value for key, value in line.items() if not key.endswith("_ms")}
             for line in _lines(tmp_path / "threads.jsonl")]
    assert strip == [{key: value for key, value in line.items() if not key.endswith("_ms")}
                     for line in _lines(tmp_path / "here.jsonl")]
