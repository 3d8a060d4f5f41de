"""Named index recipes (index_builds/*.toml)."""
from __future__ import annotations

from pathlib import Path

import pytest

from refsearch.config import IndexConfig, SearchSettings
from refsearch.errors import NotFoundError
from refsearch.recipes import available_recipes, load_recipe, recipe_folders

REPO = Path(__file__).resolve().parents[2]


def test_the_bundled_demo_recipe_points_at_the_demo_photos():
    recipe = load_recipe("demo")
    assert recipe.name == "demo"
    assert recipe.source.resolve() == (REPO / "index_builds" / "demo" / "photos").resolve()
    assert recipe.output.resolve() == (REPO / "index_builds" / "demo.index").resolve()
    assert recipe.config == IndexConfig(backbone="efficientnet-lite2", global_dim=128, cell_dim=64)
    assert {"demo", "imagenet-train"} <= set(available_recipes())


def test_a_source_naming_an_unset_variable_needs_a_folder(monkeypatch):
    monkeypatch.delenv("IMAGENET_TRAIN", raising=False)
    recipe = load_recipe("imagenet-train")
    assert recipe.source is None
    assert recipe.config.pca_images == 20000
    monkeypatch.setenv("IMAGENET_TRAIN", "/data/imagenet/train")
    assert load_recipe("imagenet-train").source == Path("/data/imagenet/train")


def test_a_recipe_file_by_path_with_relative_source_and_defaults(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('source = "photos"\n[config]\nglobal_dim = 32\nluminance_weight = 0.5\n')
    recipe = load_recipe(str(path))
    assert recipe.name == "mine" and recipe.description == ""
    assert recipe.source == tmp_path / "photos"
    assert recipe.output == tmp_path / "mine.index"
    assert recipe.config == IndexConfig(global_dim=32)
    assert recipe.search == SearchSettings(luminance_weight=0.5)


def test_home_is_expanded_in_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = tmp_path / "home.toml"
    path.write_text('source = "~/pictures"\n')
    assert load_recipe(str(path)).source == tmp_path / "home" / "pictures"


def test_recipes_in_the_working_folder_are_found_first(tmp_path, monkeypatch):
    (tmp_path / "index_builds").mkdir()
    (tmp_path / "index_builds" / "demo.toml").write_text('name = "local demo"\nsource = "here"\n')
    (tmp_path / "index_builds" / "extra.toml").write_text('description = "x"\n')
    monkeypatch.chdir(tmp_path)
    assert recipe_folders()[0] == tmp_path / "index_builds"
    assert load_recipe("demo").name == "local demo"  # the working folder's shadows the bundled one
    assert {"demo", "extra", "imagenet-train"} <= set(available_recipes())
    assert load_recipe("extra").source is None


def test_unknown_recipes_and_config_keys_are_refused(tmp_path):
    with pytest.raises(NotFoundError, match=r"no recipe named 'nope'; known: .*demo"):
        load_recipe("nope")
    path = tmp_path / "bad.toml"
    path.write_text("[config]\nglobal_dims = 32\n")
    with pytest.raises(ValueError, match="global_dims"):
        load_recipe(str(path))
