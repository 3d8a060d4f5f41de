"""An index's network on either runtime: an index built with one is queried with the other, a query with
the graph cached never imports torch, a backbone is known by the name it was registered under, and a
runtime or device that does not exist is refused when the index is opened."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tiny_backbone
import torch
from typer.testing import CliRunner

import refsearch
import refsearch.runtime.graph
from refsearch.backbones import register_backbone
from refsearch.cli import app
from refsearch.errors import InvalidArgumentError, RefsearchError
from refsearch.network import query_runtime, runtime_for
from refsearch.runtime.graph import export_graph

COMMAND_PROCESS = """
    import sys
    from typer.testing import CliRunner
    from refsearch.cli import app

    result = CliRunner().invoke(app, sys.argv[1:])
    assert result.exit_code == 0, (result.output, result.exception)
    print(sorted(m for m in ("torch", "torchvision") if m in sys.modules))
"""

SERVER_PROCESS = """
    import sys
    from fastapi.testclient import TestClient
    import refsearch
    from refsearch.server.app import create_app

    with refsearch.Index.open({index!r}) as index:
        client = TestClient(create_app(index), base_url="http://127.0.0.1")
        assert client.get("/api/health").status_code == 200
        with open({query!r}, "rb") as photo:
            answer = client.post("/api/search?k=3", files={{"image": ("q.jpg", photo, "image/jpeg")}})
        assert answer.status_code == 200 and answer.json()["runtime"].startswith("onnxruntime "), answer.text
    print(sorted(m for m in ("torch", "torchvision") if m in sys.modules))
"""

QUERY_PROCESS = """
    import json, sys
    import refsearch

    with refsearch.Index.open({index!r}) as index:
        response = index.search({query!r}, k=4, any_class=True)
    print(json.dumps({{"modules": sorted(m for m in ("torch", "torchvision") if m in sys.modules),
                      "runtime": response.runtime, "paths": [r.path for r in response]}}))
"""


def _answers(index_path, queries, runtime):
    with refsearch.Index.open(index_path, runtime=runtime) as index:
        responses = [index.search(query, k=5, any_class=True) for query in queries]
        assert index.network.runtime == runtime
    assert all(response.runtime.startswith(runtime + " ") for response in responses)
    return [[(r.path, r.score) for r in response] for response in responses]


@pytest.fixture(scope="module")
def cached_index(tmp_path_factory, demo_photos):
    """An index of 8 demo photos built on the runtime, whose graph is then in the tests' cache."""
    folder = tmp_path_factory.mktemp("cached")
    for photo in demo_photos[:8]:
        (folder / "photos").mkdir(exist_ok=True)
        (folder / "photos" / photo.name).write_bytes(photo.read_bytes())
    refsearch.build_index(folder / "photos", folder / "x.index", tiny_backbone.CONFIG, batch_size=2, workers=0,
                          streams=1, progress=False)  # auto on CPU: the runtime, which caches the graph
    return folder / "x.index"


def test_an_index_built_on_one_runtime_answers_the_same_on_the_other(tmp_path, copy_photos, demo_photos,
                                                                    tiny_build):
    copy_photos(tmp_path / "photos", 12)
    queries = demo_photos[20:24]
    for built in ("torch", "onnxruntime"):
        summary = tiny_build(tmp_path / "photos", tmp_path / f"{built}.index", runtime=built)
        assert summary.runtime.startswith(built + " ")
        on_torch = _answers(tmp_path / f"{built}.index", queries, "torch")
        on_runtime = _answers(tmp_path / f"{built}.index", queries, "onnxruntime")
        for torch_answer, runtime_answer in zip(on_torch, on_runtime):
            assert [path for path, _ in runtime_answer] == [path for path, _ in torch_answer]
            np.testing.assert_allclose([score for _, score in runtime_answer], [score for _, score in torch_answer],
                                       atol=1e-4)


def test_a_query_with_the_graph_cached_imports_no_torch(cached_index, demo_photos):
    with refsearch.Index.open(cached_index) as index:
        expected = [r.path for r in index.search(demo_photos[20], k=4, any_class=True)]
        assert query_runtime(index.config).cached
    code = textwrap.dedent(QUERY_PROCESS.format(index=str(cached_index), query=str(demo_photos[20])))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["modules"] == []
    assert answer["runtime"].startswith("onnxruntime ")
    assert answer["paths"] == expected


@pytest.mark.parametrize("command", [["query", "{query}", "-k", "2", "--json"],
                                     ["query", "{queries}", "--jsonl", "{out}", "-k", "2", "-q"],
                                     # a threshold of -1: every neighbour link is checked from its pixels
                                     ["dedup", "--threshold", "-1"],
                                     ["export", "{out}", "--drop-duplicates", "--threshold", "-1", "--dry-run"],
                                     ["outliers"], ["info"], ["verify", "-q"]])
def test_commands_on_a_cached_graph_import_no_torch(cached_index, demo_photos, demo_queries, tmp_path, command):
    values = {"query": demo_photos[20], "queries": demo_queries[0].parent, "out": tmp_path / "out.jsonl"}
    args = [part.format(**values) for part in command] + ["--index", str(cached_index)]
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(COMMAND_PROCESS), *args], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_the_server_on_a_cached_graph_imports_no_torch(cached_index, demo_photos):
    code = textwrap.dedent(SERVER_PROCESS.format(index=str(cached_index), query=str(demo_photos[20])))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_a_backbone_registered_under_another_name_is_exported_once(tmp_path, copy_photos, tiny_config, tiny_build,
                                                                   monkeypatch):
    register_backbone("tiny-by-another-name")(tiny_backbone.TinyBackbone)  # its class says "tiny-test"
    copy_photos(tmp_path / "photos", 6)
    monkeypatch.setenv("REFSEARCH_CACHE", str(tmp_path / "cache"))
    refsearch.build_index(tmp_path / "photos", tmp_path / "x.index", tiny_config.with_(backbone="tiny-by-another-name"),
                          batch_size=2, workers=0, streams=1, progress=False)
    graphs = list((tmp_path / "cache" / "graphs").glob("*.graph"))
    assert [path.name.split("-56px-")[0] for path in graphs] == ["tiny-by-another-name"]
    written = graphs[0].stat().st_mtime_ns
    with refsearch.Index.open(tmp_path / "x.index") as index:
        assert query_runtime(index.config).cached
        index.search(tmp_path / "photos" / sorted(p.name for p in (tmp_path / "photos").iterdir())[0], k=2,
                     any_class=True)
        assert (index.network.runtime, index.network.note) == ("onnxruntime", "")
    assert list((tmp_path / "cache" / "graphs").glob("*.graph")) == graphs
    assert graphs[0].stat().st_mtime_ns == written


class _Unexportable(tiny_backbone.TinyBackbone):
    """The tiny backbone with a Bessel function on its global descriptor: ONNX has none."""

    def features(self, x, feature_maps=False):
        output = super().features(x, feature_maps)
        return dataclasses.replace(output, global_descriptor=torch.special.i0(output.global_descriptor))


def test_a_backbone_that_cannot_be_exported_runs_on_torch_and_says_so(tmp_path, copy_photos, demo_photos,
                                                                      tiny_config, monkeypatch):
    register_backbone("tiny-unexportable")(_Unexportable)
    exports = []

    def counted_export(backbone):
        exports.append(backbone.name)
        return export_graph(backbone)

    monkeypatch.setattr(refsearch.runtime.graph, "export_graph", counted_export)
    monkeypatch.setenv("REFSEARCH_CACHE", str(tmp_path / "cache"))
    copy_photos(tmp_path / "photos", 6)
    summary = refsearch.build_index(tmp_path / "photos", tmp_path / "x.index",
                                    tiny_config.with_(backbone="tiny-unexportable"), batch_size=2, workers=0,
                                    streams=1, progress=False)
    assert summary.added == 6 and summary.runtime.startswith("torch ")
    assert any("cannot be exported" in note and "runs on torch" in note for note in summary.notes), summary.notes
    with refsearch.Index.open(tmp_path / "x.index") as index:
        response = index.search(demo_photos[20], k=3, any_class=True)
        assert len(response) == 3 and response.runtime.startswith("torch ")
        assert "runs on torch" in index.network.note
    queried = CliRunner().invoke(app, ["query", str(demo_photos[20]), "--index", str(tmp_path / "x.index"), "-k", "2",
                                       "--any-class", "--json"])
    assert queried.exit_code == 0, queried.output
    assert "cannot be exported" in queried.stderr and "runs on torch" in queried.stderr
    assert exports == ["tiny-test"]  # tried once, by the build; then the failure it left is read
    assert "found when it was first tried; delete " in queried.stderr


@pytest.mark.parametrize(("runtime", "device", "precision", "chosen"), [
    ("auto", "cpu", "auto", "onnxruntime"), ("auto", "cpu", "float32", "onnxruntime"),
    ("auto", "cpu", "bfloat16", "torch"), ("auto", "cuda", "auto", "torch"), ("torch", "cpu", "auto", "torch"),
    ("onnxruntime", "cpu", "auto", "onnxruntime")])
def test_auto_is_the_runtime_on_cpu_in_float32_and_torch_otherwise(runtime, device, precision, chosen):
    assert runtime_for(runtime, device, precision) == chosen


@pytest.mark.parametrize(("device", "precision"), [("cuda", "auto"), ("cpu", "bfloat16"), ("cpu", "float16")])
def test_the_runtime_is_refused_on_a_gpu_or_in_a_reduced_precision(device, precision):
    with pytest.raises(InvalidArgumentError, match="runs on CPU in float32") as refused:
        runtime_for("onnxruntime", device, precision)
    assert "--runtime torch" in refused.value.hint


@pytest.mark.parametrize(("options", "message"), [({"runtime": "tensorflow"}, "runtime"),
                                                  ({"device": "tpu"}, "device")])
def test_an_unknown_runtime_or_device_is_refused_when_the_index_opens(tmp_path, copy_photos, tiny_build, options,
                                                                      message):
    copy_photos(tmp_path / "photos", 4)
    tiny_build(tmp_path / "photos", tmp_path / "x.index")
    with pytest.raises(RefsearchError, match=message):
        refsearch.Index.open(tmp_path / "x.index", **options)
