"""How an index is built (`IndexConfig`) and how it is searched by default (`SearchSettings`).

Both are frozen, validated dataclasses saved in the index's manifest. The build settings decide what is
stored, so an index refuses a query or an update made with other ones; the search settings are defaults
that each query may override.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from .errors import ConfigMismatchError, InvalidArgumentError

CLASS_CHOICES = ("taxonomy", "probability")
CROPS = ("full", "center")
MIN_INPUT_SIZE = 32


class _Settings:
    """Saving, loading and changing a frozen settings dataclass."""

    KIND = "setting"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigMismatchError(f"unknown {cls.KIND} fields {unknown}",
                                      "this index was built by a newer refsearch, or the recipe has a typo")
        return cls(**data)

    def with_(self, **changes):
        """A copy with the changes that are not None."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _at_least(name: str, value, low) -> None:
    if value < low:
        raise InvalidArgumentError(f"{name} must be at least {low}, got {value}")


@dataclass(frozen=True)
class IndexConfig(_Settings):
    """What an index stores and how it was computed."""

    KIND = "build setting"

    backbone: str = "efficientnet-lite2"
    # Fingerprint of the backbone weights; filled in when an index is built.
    weights: str = ""
    grid: int = 7
    # The network sees a square of input_size pixels (0: the backbone's native size, fixed when the index is
    # built): the whole frame squeezed to a square ("full"), or its centre square ("center"), which the
    # cell histograms then cover too.
    input_size: int = 0
    crop: str = "full"
    global_dim: int = 128
    cell_dim: int = 64
    # Images the PCA projections are fitted on (spread over the collection).
    pca_images: int = 5000
    hist_bins: int = 10
    hist_short_side: int = 256
    hist_border: int = 16

    def __post_init__(self) -> None:
        if not self.backbone:
            raise InvalidArgumentError("backbone must be named")
        for name in ("grid", "global_dim", "cell_dim", "pca_images"):
            _at_least(name, getattr(self, name), 1)
        if self.input_size and self.input_size < MIN_INPUT_SIZE:
            raise InvalidArgumentError(f"input_size must be 0 (the backbone's own) or at least {MIN_INPUT_SIZE}, "
                                       f"got {self.input_size}")
        if self.crop not in CROPS:
            raise InvalidArgumentError(f"crop must be one of {', '.join(CROPS)}, got {self.crop!r}")
        if not 2 <= self.hist_bins <= 256:
            raise InvalidArgumentError(f"hist_bins must be from 2 to 256, got {self.hist_bins}")
        _at_least("hist_border", self.hist_border, 0)
        inner = self.hist_short_side - 2 * self.hist_border
        if inner < self.grid:
            raise InvalidArgumentError(
                f"hist_short_side {self.hist_short_side} less twice hist_border {self.hist_border} leaves "
                f"{inner} pixels, fewer than the {self.grid} cells of the grid")

    @property
    def cells(self) -> int:
        return self.grid * self.grid

    def differences(self, other: "IndexConfig") -> list[str]:
        """Human-readable differences between two build configurations."""
        return [f"{f.name}: {getattr(self, f.name)!r} vs {getattr(other, f.name)!r}"
                for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


@dataclass(frozen=True)
class SearchSettings(_Settings):
    """How a query is answered unless it says otherwise."""

    KIND = "search setting"

    global_candidates: int = 200
    luminance_weight: float = 0.25
    # A class-restricted search also considers this many all-class global neighbours, keeping those closer
    # to the query than anything in the searched classes: a misclassified query still finds its near copies.
    rescue_candidates: int = 20
    # A searched class holding fewer images than this is widened, up to `widen_classes` classes in all, to
    # the classes nearest the query's in meaning ("taxonomy": highest Wu-Palmer similarity expected under
    # the predicted class distribution) or to the next most probable ones ("probability", the paper's).
    min_class_images: int = 10
    widen_classes: int = 10
    class_choice: str = "taxonomy"
    # The Wu-Palmer similarities are raised to this power before their expectation is taken: most classes are
    # moderately similar (0.6 to 0.9) to any guess, and without it they outweigh a class the classifier also
    # finds probable (docs/benchmarks.md measures 1 to 32).
    taxonomy_sharpness: float = 16.0
    # Up to this many images the all-class search scans every class; past it, only the `all_class_probes`
    # classes whose mean descriptor is nearest the query (an inverted file whose lists are the classes).
    exact_all_class_limit: int = 100_000
    all_class_probes: int = 16

    def __post_init__(self) -> None:
        _at_least("global_candidates", self.global_candidates, 1)
        _at_least("luminance_weight", self.luminance_weight, 0.0)
        _at_least("rescue_candidates", self.rescue_candidates, 0)
        _at_least("min_class_images", self.min_class_images, 1)
        _at_least("widen_classes", self.widen_classes, 1)
        _at_least("taxonomy_sharpness", self.taxonomy_sharpness, 1.0)
        if self.class_choice not in CLASS_CHOICES:
            raise InvalidArgumentError(f"class_choice must be one of {', '.join(CLASS_CHOICES)}, "
                                       f"got {self.class_choice!r}")
        _at_least("exact_all_class_limit", self.exact_all_class_limit, 0)
        _at_least("all_class_probes", self.all_class_probes, 1)
