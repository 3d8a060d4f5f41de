import numpy as np
import pytest
import torch

from colorize.example_store import Example, ExampleStore, photo_key
from colorize.prior import bin_centres

DESCRIPTION = {"backbone": "tiny", "settings": {"scales": (0.8, 1.0)}}


def same(a: Example, b: Example) -> bool:
    return all(x.dtype == y.dtype and torch.equal(x, y) for x, y in
               zip([*vars(a.inputs).values(), a.colour_bins, a.cell_ab],
                   [*vars(b.inputs).values(), b.colour_bins, b.cell_ab])) and a.energy == b.energy


def test_examples_come_back_the_same_from_disk_in_a_new_store(tmp_path, make_example):
    store = ExampleStore(tmp_path / "examples", DESCRIPTION)
    first, second = [make_example(1), make_example(2)], [make_example(3, grid=(5, 3))]
    store.add("photo-b", first)
    store.add("photo-a", second)
    assert len(store) == 3 and store.photos == 2 and "photo-a" in store and "photo-c" not in store

    reopened = ExampleStore(tmp_path / "examples", DESCRIPTION, memory_budget=0)
    assert len(reopened) == 3 and reopened.photos == 2
    assert same(reopened[0], second[0]) and same(reopened[1], first[0]) and same(reopened[2], first[1])
    assert reopened.grids == [(5, 3), (3, 4), (3, 4)]
    expected_bins = np.zeros(len(bin_centres()), bool)
    expected_bins[[1, 2, 3, 101, 102, 103]] = True
    assert np.array_equal(reopened.bins_seen, expected_bins)
    with pytest.raises(IndexError):
        reopened[3]


def test_a_store_refuses_other_settings_and_folders_that_are_not_stores(tmp_path, make_example):
    ExampleStore(tmp_path / "examples", DESCRIPTION).add("p", [make_example(1)])
    with pytest.raises(ValueError, match="prepared otherwise.*settings"):
        ExampleStore(tmp_path / "examples", {**DESCRIPTION, "settings": {"scales": (1.0,)}})
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="not empty"):
        ExampleStore(tmp_path / "photos", DESCRIPTION)


def test_a_file_cut_short_by_a_crash_is_not_taken_for_a_prepared_photo(tmp_path, make_example):
    store = ExampleStore(tmp_path, DESCRIPTION)
    store.add("done", [make_example(1)])
    (tmp_path / "cut.npz.partial").write_bytes(b"half a file")
    reopened = ExampleStore(tmp_path, DESCRIPTION)
    assert len(reopened) == 1 and "cut" not in reopened
    assert not list(tmp_path.glob("*.partial"))


def test_memory_budget_bounds_what_stays_in_memory(tmp_path, make_example):
    store = ExampleStore(tmp_path, DESCRIPTION, memory_budget=make_example(1).nbytes())
    store.add("p", [make_example(1), make_example(2)])
    assert len(store._cache) == 1
    assert same(store[1], make_example(2)) and len(store._cache) == 1


def test_photo_keys_follow_the_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert photo_key("a.jpg") == photo_key(tmp_path / "a.jpg") != photo_key(tmp_path / "b.jpg")
