"""What a `refsearch serve` instance allows: upload and image sizes, and bounds on what one request may
ask for."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..images import DEFAULT_MAX_PIXELS
from .trust import Trust

MEGABYTE = 1024 * 1024


@dataclass(frozen=True)
class ServerSettings:
    # A multipart body may exceed the file by its part headers and form fields; this much is allowed over.
    max_upload_bytes: int = 32 * MEGABYTE
    # Checked on the header before decoding: a few kilobytes of PNG can claim gigapixels. The same default as
    # every decode's (refsearch.images.DEFAULT_MAX_PIXELS); `refsearch serve --max-pixels` sets both.
    max_pixels: int = DEFAULT_MAX_PIXELS
    # Bounds on one request's work, so that no single request can occupy the network for long.
    max_k: int = 200
    max_topk: int = 8
    max_candidates: int = 5000
    max_review: int = 1000
    thumbnail_sizes: tuple[int, int] = (16, 1024)
    thumbnail_cache_bytes: int = 64 * MEGABYTE
    # Colorizations kept for quick re-renders with other colour points (each 6 to 30 MB for a 4:3 photo).
    max_sessions: int = 8
    # Which requests are answered: the Host names, other pages' requests, the token (see trust.py).
    trust: Trust = field(default_factory=Trust)

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_k", "max_topk", "max_candidates", "max_review",
                     "max_sessions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
