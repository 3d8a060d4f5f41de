"""Backbones exported to graphs in a cache folder of the test's own; the real network once per session."""
from __future__ import annotations

import pytest

from refsearch.backbones import create_backbone
from refsearch.runtime import GraphKey, open_network


@pytest.fixture(scope="session")
def tiny():
    return create_backbone("tiny-test")


@pytest.fixture
def graph_cache(tmp_path, monkeypatch):
    """An empty cache folder, which REFSEARCH_CACHE names for the test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("REFSEARCH_CACHE", str(folder))
    return folder


@pytest.fixture(scope="session")
def efficientnet():
    """The default network: efficientnet-lite2, gray weights, 260 px."""
    return create_backbone("efficientnet-lite2")


@pytest.fixture(scope="session")
def efficientnet_graph(efficientnet, tmp_path_factory):
    """The default network on the runtime, exported into a cache folder of the session's."""
    return open_network(GraphKey.of(efficientnet), lambda: efficientnet, tmp_path_factory.mktemp("graph-cache"))
