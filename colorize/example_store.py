"""Training examples of the chroma prior kept on disk: one file per photo, written whole or not at all. So
preparing a large collection needs the memory of a few photos, a run cut short resumes where it stopped,
and training reads the examples it samples (keeping as many in memory as a budget allows)."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from refsearch.errors import InvalidArgumentError

from .prior import PriorInputs, bin_centres

STORE_FILE = "store.json"
STORE_FORMAT = 1
DEFAULT_MEMORY_BUDGET = 4 << 30  # bytes of examples kept in memory once read
_FIELDS = ("levels", "global_descriptor", "exemplar", "reference_ab", "cell_ab", "bins_at", "bins_share")


@dataclass
class Example:
    """One photo (or its mirror image) on its cell grid: the prior's inputs and what it should predict,
    the histogram of its pixels' colour bins per cell (Q, gh, gw), their mean (2, gh, gw) and the photo's
    mean chroma energy."""

    inputs: PriorInputs
    colour_bins: torch.Tensor
    cell_ab: torch.Tensor
    energy: float

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.cell_ab.shape[1:])

    def bins_seen(self) -> np.ndarray:
        """Which colour bins any of its pixels fall in."""
        return (self.colour_bins.float().sum(dim=(1, 2)) > 0).numpy()

    def nbytes(self) -> int:
        tensors = [*vars(self.inputs).values(), self.colour_bins, self.cell_ab]
        return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def bins_seen_by(examples: Sequence[Example]) -> np.ndarray:
    """The colour bins that any of the examples' pixels fall in."""
    seen = np.zeros(len(bin_centres()), bool)
    for example in examples:
        seen |= example.bins_seen()
    return seen


def photo_key(photo: str | os.PathLike) -> str:
    """The name of a photo's file in a store: a digest of its absolute path."""
    return hashlib.sha1(str(Path(photo).resolve()).encode()).hexdigest()[:24]


class ExampleStore(Sequence[Example]):
    """A folder of examples prepared under one `description` (backbone, index, settings: whatever the
    examples depend on), refused when reopened under another. Examples are numbered in the order they were
    added (on reopening, in the order of their files' names), each photo's examples together."""

    def __init__(self, directory: str | os.PathLike, description: dict,
                 memory_budget: int = DEFAULT_MEMORY_BUDGET):
        self.directory = Path(directory)
        self.memory_budget = memory_budget
        wanted = json.loads(json.dumps({"format": STORE_FORMAT, **description}))
        marker = self.directory / STORE_FILE
        if marker.is_file():
            found = json.loads(marker.read_text())
            if found != wanted:
                differing = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
                raise InvalidArgumentError(f"{self.directory} holds examples prepared otherwise (differing: "
                                           f"{', '.join(differing)})", "give another folder or delete this one")
        elif self.directory.is_dir() and any(self.directory.iterdir()):
            raise InvalidArgumentError(f"{self.directory} is not empty and holds no prepared examples",
                                       "give a new folder")
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_atomically(marker, lambda file: file.write(json.dumps(wanted, indent=1).encode()))
        for leftover in self.directory.glob("*.partial"):
            leftover.unlink()
        self._entries: list[tuple[str, int]] = []
        self._grids: list[tuple[int, int]] = []
        self._bins_seen = np.zeros(len(bin_centres()), bool)
        self._keys: set[str] = set()
        self._cache: dict[tuple[str, int], Example] = {}
        self._cached_bytes = 0
        for path in sorted(self.directory.glob("*.npz")):
            with np.load(path) as stored:
                self._register(path.stem, stored["grids"], stored["bins_seen"])

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, number: int) -> Example:
        key, position = self._entries[number]
        cached = self._cache.get((key, position))
        if cached is not None:
            return cached
        with np.load(self._path(key)) as stored:
            example = _from_arrays({name: stored[f"{name}{position}"] for name in _FIELDS},
                                   float(stored["energy"][position]))
        self._keep((key, position), example)
        return example

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    @property
    def photos(self) -> int:
        return len(self._keys)

    @property
    def grids(self) -> list[tuple[int, int]]:
        """Each example's (gh, gw), without reading the examples."""
        return list(self._grids)

    @property
    def bins_seen(self) -> np.ndarray:
        """The colour bins that any example's pixels fall in."""
        return self._bins_seen.copy()

    def add(self, key: str, examples: Sequence[Example]) -> None:
        """One photo's examples, under its key (photo_key), written whole or not at all."""
        arrays = {f"{name}{position}": value for position, example in enumerate(examples)
                  for name, value in _to_arrays(example).items()}
        grids = np.array([example.grid for example in examples], np.int64).reshape(-1, 2)
        bins_seen = bins_seen_by(examples)
        energy = np.array([example.energy for example in examples], np.float64)
        _write_atomically(self._path(key), lambda file: np.savez(file, grids=grids, bins_seen=bins_seen,
                                                                 energy=energy, **arrays))
        start = len(self._entries)
        self._register(key, grids, bins_seen)
        for position, example in enumerate(examples):
            self._keep(self._entries[start + position], example)

    def _register(self, key: str, grids: np.ndarray, bins_seen: np.ndarray) -> None:
        self._keys.add(key)
        self._entries += [(key, position) for position in range(len(grids))]
        self._grids += [(int(rows), int(columns)) for rows, columns in grids]
        self._bins_seen |= bins_seen.astype(bool)

    def _keep(self, entry: tuple[str, int], example: Example) -> None:
        size = example.nbytes()
        if self._cached_bytes + size <= self.memory_budget:
            self._cache[entry] = example
            self._cached_bytes += size

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"


def _to_arrays(example: Example) -> dict[str, np.ndarray]:
    """An example's tensors as arrays; its colour histograms, nearly all zeros (a cell's pixels fall in a
    few of the bins), as the flat positions and values of their nonzero entries."""
    inputs = example.inputs
    bins = example.colour_bins.numpy().ravel()
    nonzero = np.flatnonzero(bins)
    return {"levels": inputs.levels.numpy(), "global_descriptor": inputs.global_descriptor.numpy(),
            "exemplar": inputs.exemplar.numpy(), "reference_ab": inputs.reference_ab.numpy(),
            "cell_ab": example.cell_ab.numpy(), "bins_at": nonzero.astype(np.int32),
            "bins_share": bins[nonzero]}


def _from_arrays(arrays: dict[str, np.ndarray], energy: float) -> Example:
    tensors = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in arrays.items()}
    cell_ab = tensors["cell_ab"]
    shape = (len(bin_centres()), *cell_ab.shape[1:])
    bins = torch.zeros(int(np.prod(shape)), dtype=tensors["bins_share"].dtype)
    bins[tensors["bins_at"].long()] = tensors["bins_share"]
    inputs = PriorInputs(tensors["levels"], tensors["global_descriptor"], tensors["exemplar"],
                         tensors["reference_ab"])
    return Example(inputs, bins.reshape(shape), cell_ab, energy)


def _write_atomically(path: Path, write) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as file:
        write(file)
    os.replace(partial, path)
