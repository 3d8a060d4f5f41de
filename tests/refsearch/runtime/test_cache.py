"""The graph cache: keyed by what the graph computes, written whole, and never trusted when torn, stale or
foreign; two processes exporting at once both end with a sound file; an unwritable folder still gives a
network, exported for the process alone."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from refsearch.errors import ConfigMismatchError, GraphExportError
from refsearch.runtime import GraphKey, cache_folder, graph_path, open_network
from refsearch.runtime.cache import MAGIC, failure_path, read_failure, read_graph, write_failure
from refsearch.runtime.graph import export_graph


def _never():
    raise AssertionError("the graph was exported again instead of read from the cache")


@pytest.fixture
def cached(tiny, graph_cache):
    """The tiny backbone's key, its graph exported into the test's cache folder."""
    key = GraphKey.of(tiny)
    open_network(key, lambda: tiny)
    return key


def test_the_cache_folder_is_refsearch_cache_else_xdg_cache_home_else_home(monkeypatch, tmp_path):
    monkeypatch.setenv("REFSEARCH_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "mine"
    monkeypatch.delenv("REFSEARCH_CACHE")
    assert cache_folder() == tmp_path / "xdg" / "refsearch"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder() == tmp_path / "home" / ".cache" / "refsearch"


def test_an_exported_graph_is_stored_and_read_back_without_exporting_again(tiny, cached, graph_cache):
    path = graph_path(cached)
    assert path.parent == graph_cache / "graphs" and path.read_bytes().startswith(MAGIC)
    assert path.stat().st_mode & 0o777 == 0o644  # readable by all: a cache folder may be shared
    network = open_network(cached, _never)
    luminance = np.random.default_rng(0).integers(0, 256, (2, 56, 56), dtype=np.uint8)
    np.testing.assert_allclose(network.extract(luminance).cells, tiny.extract(luminance).cells.numpy(),
                               rtol=1e-5, atol=1e-5)
    assert network.note == "" and network.fingerprint == tiny.fingerprint
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".lock"]


def test_other_weights_input_size_or_backbone_are_other_files(cached):
    others = [replace(cached, fingerprint="0" * 16), replace(cached, input_size=64), replace(cached, backbone="other")]
    names = {graph_path(key).name for key in [cached, *others]}
    assert len(names) == 4
    for key in others:  # nor is the stored graph read for any of them
        assert read_graph(graph_path(cached), key) == (None, "another network's")


def test_a_backbone_other_than_the_keys_is_refused(tiny, graph_cache):
    with pytest.raises(ConfigMismatchError, match="weights 0000000000000000"):
        open_network(GraphKey("tiny-test", "0" * 16, 56), lambda: tiny)


def _header(path: Path) -> tuple[dict, int]:
    data = path.read_bytes()
    length = int.from_bytes(data[len(MAGIC):len(MAGIC) + 4], "little")
    return json.loads(data[len(MAGIC) + 4:len(MAGIC) + 4 + length]), len(MAGIC) + 4 + length


def _with_header(path: Path, change) -> None:
    header, end = _header(path)
    change(header)
    text = json.dumps(header).encode()
    path.write_bytes(MAGIC + len(text).to_bytes(4, "little") + text + path.read_bytes()[end:])


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1000])


def _damaged(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5000] ^= 0xFF
    path.write_bytes(bytes(data))


def _stale(path: Path) -> None:
    _with_header(path, lambda header: header["key"].update(runtime_version="0.1"))


def _other_format(path: Path) -> None:
    _with_header(path, lambda header: header.update(format="refsearch-graph/0"))


def _another_networks(path: Path) -> None:
    _with_header(path, lambda header: header["key"].update(fingerprint="0" * 16))


def _not_ours(path: Path) -> None:
    path.write_bytes(b"\x08\x07" + bytes(range(256)) * 100)


def _only_the_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:_header(path)[1]])


@pytest.mark.parametrize("spoil, problem", [
    (_cut, "torn"), (_damaged, "torn"), (_only_the_header, "torn"), (_stale, "stale"),
    (_other_format, "stale"), (_another_networks, "another network's"), (_not_ours, "not a refsearch graph")])
def test_a_torn_stale_or_foreign_file_is_exported_again_and_replaced(tiny, cached, spoil, problem):
    path = graph_path(cached)
    spoil(path)
    assert read_graph(path, cached)[0] is None
    exported = []
    network = open_network(cached, lambda: exported.append(1) or tiny)
    assert exported == [1] and problem in network.note and "exported again" in network.note
    assert read_graph(path, cached)[1] == ""
    open_network(cached, _never)


def test_an_unwritable_cache_folder_exports_for_the_process_alone(tiny, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("REFSEARCH_CACHE", str(blocker / "cache"))
    network = open_network(GraphKey.of(tiny), lambda: tiny)
    assert "cannot be written" in network.note and "REFSEARCH_CACHE" in network.note
    assert network.extract(np.zeros((1, 56, 56), np.uint8)).logits.shape == (1, 1000)


EXPORTER = """
    import json, os, pathlib, sys, time, types
    import numpy
    from refsearch.runtime import GraphKey, cache, open_network
    from refsearch.runtime.network import NetworkInfo
    if not {flock}:
        cache.fcntl = None
    folder = pathlib.Path({folder!r})
    info = NetworkInfo.from_dict(json.loads((folder / "info.json").read_text()))
    exported = []

    def export(key, load_backbone):  # the tiny backbone's graph, exported by the test beforehand
        exported.append(1)
        time.sleep(0.5)  # long enough for the other process to arrive while this one exports
        return types.SimpleNamespace(onnx=(folder / "graph.onnx").read_bytes(), info=info, exporter={{}})

    cache._export = export
    barrier = folder / "barrier"
    (barrier / str(os.getpid())).touch()
    while len(list(barrier.iterdir())) < 2:  # both processes ask for the graph at the same moment
        time.sleep(0.01)
    network = open_network(GraphKey(info.name, info.fingerprint, info.input_size), None)
    print(json.dumps({{"exported": len(exported), "torch": "torch" in sys.modules,
                      "logits": network.extract(numpy.zeros((1, 56, 56), "uint8")).logits.shape[1]}}))
"""


@pytest.mark.parametrize("flock", [True, False])
def test_two_processes_exporting_at_once_both_get_a_sound_graph(tiny, graph_cache, tmp_path, flock):
    """With flock the second waits for the first's export and reads its file; without (Windows), both
    export and rename their own whole file over the name."""
    exported = export_graph(tiny)
    (tmp_path / "graph.onnx").write_bytes(exported.onnx)
    (tmp_path / "info.json").write_text(json.dumps(exported.info.to_dict()))
    (tmp_path / "barrier").mkdir()
    code = textwrap.dedent(EXPORTER.format(flock=flock, folder=str(tmp_path)))
    processes = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [(r["logits"], r["torch"]) for r in results] == [(1000, False)] * 2
    assert sorted(r["exported"] for r in results) == ([0, 1] if flock else [1, 1])
    key = GraphKey.of(tiny)
    assert read_graph(graph_path(key), key)[1] == ""
    assert not list(graph_path(key).parent.glob("*.tmp"))


def test_an_export_failure_is_remembered_and_a_torn_record_is_not_trusted(tmp_path):
    path = tmp_path / "x.onnx.graph"
    failure_path(path).write_text('{"message": "x cannot be exp')  # cut short
    assert read_failure(path) is None
    write_failure(path, GraphExportError("x cannot be exported (aten::i0)", "it runs on torch"))
    remembered = read_failure(path)
    assert remembered.message.startswith("x cannot be exported (aten::i0) (found when it was first tried; delete ")
    assert remembered.hint == "it runs on torch"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.onnx.graph.failed"]
