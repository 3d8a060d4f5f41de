"""The server tests' own copy of the demo index, open for the package and closed after it, so that nothing
they do can reach the session's demo index."""
from __future__ import annotations

import shutil

import pytest

import refsearch


@pytest.fixture(scope="package")
def served_index(demo_index_path, tmp_path_factory):
    copy = shutil.copytree(demo_index_path, tmp_path_factory.mktemp("served") / "demo.index")
    with refsearch.Index.open(copy) as index:
        yield index
