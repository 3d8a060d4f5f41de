"""How an index is built and searched: one frozen dataclass, saved in the index's manifest."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from .errors import ConfigMismatchError


@dataclass(frozen=True)
class IndexConfig:
    backbone: str = "efficientnet-lite2"
    # Fingerprint of the backbone weights; filled in when an index is built.
    weights: str = ""
    grid: int = 7
    global_dim: int = 128
    cell_dim: int = 64
    # Images the PCA projections are fitted on (spread over the collection).
    pca_images: int = 5000
    hist_bins: int = 10
    hist_short_side: int = 256
    hist_border: int = 16
    # Search defaults, recorded so that results say how they were ranked; a query may override them.
    global_candidates: int = 200
    luminance_weight: float = 0.25
    # A class-restricted search also considers this many all-class global neighbours, keeping those closer
    # to the query than anything in the searched classes: a misclassified query still finds its near copies.
    rescue_candidates: int = 20
    # Classes tried, most probable first, before a query with too few candidates searches all classes.
    widen_classes: int = 10
    # Above this many images the all-class search uses an approximate (IVF) index instead of a full scan.
    exact_all_class_limit: int = 100_000
    ivf_nprobe: int = 32

    # Fields that change what is stored; the rest are search defaults.
    BUILD_FIELDS = ("backbone", "weights", "grid", "global_dim", "cell_dim", "pca_images",
                    "hist_bins", "hist_short_side", "hist_border")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "IndexConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigMismatchError(f"unknown config fields {unknown}; this index was built by a newer refsearch?")
        return cls(**data)

    def with_(self, **changes) -> "IndexConfig":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def build_differences(self, other: "IndexConfig") -> list[str]:
        """Human-readable differences in the fields that decide what an index stores."""
        return [f"{name}: {getattr(self, name)!r} vs {getattr(other, name)!r}"
                for name in self.BUILD_FIELDS if getattr(self, name) != getattr(other, name)]
