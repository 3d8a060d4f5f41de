"""A batch query's lines: each photo's `SearchResponse.to_dict()`, or {query, error, hint} for a photo
that could not be read."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..images import ImageError
from ..request import SearchRequest
from ..searcher import EmbeddedBatch, search_embedded

if TYPE_CHECKING:
    from ..search import Index


def answer_lines(index: "Index", batch: EmbeddedBatch, request: SearchRequest) -> list[dict]:
    return [{"query": str(source), "error": answer.message, "hint": answer.hint} if isinstance(answer, ImageError)
            else answer.to_dict()
            for source, answer in zip(batch.sources, search_embedded(index, batch, request))]
