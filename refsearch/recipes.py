"""Named index recipes: small TOML files in `index_builds/` saying what to index and how."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from .config import IndexConfig, SearchSettings
from .errors import InvalidArgumentError, NotFoundError

RECIPE_FOLDER = "index_builds"


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    source: Path | None  # None: the recipe needs a source folder on the command line
    output: Path
    config: IndexConfig
    search: SearchSettings


def recipe_folders() -> list[Path]:
    """Where recipes are looked up: ./index_builds, then the one beside the package (a source checkout)."""
    folders = [Path.cwd() / RECIPE_FOLDER, Path(__file__).resolve().parents[1] / RECIPE_FOLDER]
    return [folder for i, folder in enumerate(folders) if folder.is_dir() and folder not in folders[:i]]


def available_recipes() -> list[str]:
    return sorted({path.stem for folder in recipe_folders() for path in folder.glob("*.toml")})


def load_recipe(name_or_path: str) -> Recipe:
    path = Path(name_or_path)
    if not (path.suffix == ".toml" and path.is_file()):
        matches = [folder / f"{name_or_path}.toml" for folder in recipe_folders()]
        matches = [m for m in matches if m.is_file()]
        if not matches:
            known = ", ".join(available_recipes()) or "none found"
            raise NotFoundError(f"no recipe named {name_or_path!r}",
                                f"known: {known}; or give the path of a recipe .toml file")
        path = matches[0]
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    base = path.parent
    settings = data.get("config", {})
    build_keys, search_keys = {f.name for f in fields(IndexConfig)}, {f.name for f in fields(SearchSettings)}
    unknown = sorted(set(settings) - build_keys - search_keys)
    if unknown:
        raise InvalidArgumentError(f"{path}: unknown config keys {unknown}",
                                   f"known: {', '.join(sorted(build_keys | search_keys))}")
    source = data.get("source")
    if source:
        source = os.path.expandvars(os.path.expanduser(source))
        source = None if "$" in source else base / source
    return Recipe(name=data.get("name", path.stem), description=data.get("description", ""),
                  source=source, output=base / data.get("output", f"{path.stem}.index"),
                  config=IndexConfig(**{k: v for k, v in settings.items() if k in build_keys}),
                  search=SearchSettings(**{k: v for k, v in settings.items() if k in search_keys}))
