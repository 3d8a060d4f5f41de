"""The index manifest: how the index was built, what it holds, and whether it is complete."""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import IndexConfig
from .errors import IndexStateError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


def software_versions() -> dict[str, str]:
    import faiss
    import numpy
    import torch

    from . import __version__

    return {"refsearch": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "faiss": faiss.__version__, "numpy": numpy.__version__}


@dataclass
class Manifest:
    config: IndexConfig
    source: str
    state: str = "building"  # "building" until a build finishes, then "complete"
    generation: int = 0
    images: int = 0
    skipped: int = 0
    classes: int = 0
    dims: dict = field(default_factory=dict)  # stored descriptor sizes: global, cell
    search_kind: str = "exact"
    files: dict = field(default_factory=dict)
    versions: dict = field(default_factory=software_versions)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    format_version: int = FORMAT_VERSION

    def save(self, folder: Path) -> None:
        self.updated = time.time()
        data = asdict(self)
        data["config"] = self.config.to_dict()
        path = Path(folder) / MANIFEST_NAME
        temporary = path.with_name(path.name + ".tmp")
        with open(temporary, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    @classmethod
    def load(cls, folder: Path) -> "Manifest":
        path = Path(folder) / MANIFEST_NAME
        if not Path(folder).exists():
            raise IndexStateError(f"{folder}: no such index (build one with `refsearch build-index DIR -o {folder}`)")
        if not path.exists():
            raise IndexStateError(f"{folder} is not a refsearch index (no {MANIFEST_NAME})")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise IndexStateError(f"{path} is unreadable: {exc}") from None
        if data.get("format_version") != FORMAT_VERSION:
            raise IndexStateError(f"{folder} has index format {data.get('format_version')}, this refsearch "
                                  f"reads format {FORMAT_VERSION}; rebuild it with `refsearch build-index --rebuild`")
        data["config"] = IndexConfig.from_dict(data["config"])
        return cls(**data)

    @staticmethod
    def exists(folder: Path) -> bool:
        return (Path(folder) / MANIFEST_NAME).exists()
