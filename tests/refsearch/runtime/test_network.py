"""Running a cached graph: no torch in the process, numpy outputs in Backbone.extract's layout, and
passes from several threads at once on one network."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from refsearch.runtime import GraphKey, NetworkInfo, RuntimeNetwork, open_network
from refsearch.runtime.graph import export_graph

QUERY_PROCESS = """
    import json, sys
    import numpy
    from refsearch.runtime import GraphKey, open_network

    def export():
        raise SystemExit("asked to export: the cached graph was not used")

    network = open_network(GraphKey({name!r}, {fingerprint!r}, 56), export)
    output = network.extract(numpy.full((3, 56, 56), 90, numpy.uint8))
    print(json.dumps({{"modules": sorted(m for m in ("torch", "torchvision") if m in sys.modules),
                      "shapes": [list(output.logits.shape), list(output.global_descriptor.shape),
                                 list(output.cells.shape)], "grid": network.grid, "cell_dim": network.cell_dim}}))
"""


def test_a_cached_graph_loads_and_runs_without_importing_torch(tiny, graph_cache):
    open_network(GraphKey.of(tiny), lambda: tiny)
    code = textwrap.dedent(QUERY_PROCESS.format(name=tiny.name, fingerprint=tiny.fingerprint))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"modules": [], "shapes": [[3, 1000], [3, 24], [3, 12, 7, 7]], "grid": 7,
                                       "cell_dim": 12}


def test_threads_sharing_one_network_get_what_each_pass_gives_alone(tiny, graph_cache):
    network = open_network(GraphKey.of(tiny), lambda: tiny)
    batches = [np.random.default_rng(seed).integers(0, 256, (2, 56, 56), dtype=np.uint8) for seed in range(8)]
    alone = [network.extract(batch).global_descriptor for batch in batches]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda batch: network.extract(batch).global_descriptor, batches * 3))
    for index, descriptor in enumerate(together):
        np.testing.assert_array_equal(descriptor, alone[index % len(batches)])


def test_network_info_round_trips_and_must_name_the_graphs_outputs(tiny):
    exported = export_graph(tiny)
    assert NetworkInfo.from_dict(json.loads(json.dumps(exported.info.to_dict()))) == exported.info
    other_info = NetworkInfo(**{**exported.info.to_dict(), "feature_maps": 1})
    with pytest.raises(ValueError, match="outputs"):
        RuntimeNetwork(exported.onnx, other_info)
