"""The server tests' own copy of the demo index, open for the package and closed after it. LMDB refuses to
open one environment twice in a process, and other modules open the session's demo index themselves."""
from __future__ import annotations

import shutil

import pytest

import refsearch


@pytest.fixture(scope="package")
def served_index(demo_index_path, tmp_path_factory):
    copy = shutil.copytree(demo_index_path, tmp_path_factory.mktemp("served") / "demo.index")
    with refsearch.Index.open(copy) as index:
        yield index
