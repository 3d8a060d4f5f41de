"""What a search returns."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class SearchResult:
    rank: int
    id: int
    path: str
    label: str
    label_name: str
    score: float  # semantic + luminance_weight * luminance; lower is better
    semantic: float
    luminance: float
    global_similarity: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ClassGuess:
    wnid: str
    name: str
    probability: float


@dataclass
class SearchResponse:
    query: str
    results: list[SearchResult]
    predicted: list[ClassGuess]
    searched_classes: list[str] | None  # None: every class
    notes: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    forward_ms: float = 0.0  # the network and PCA, per photo of the batch it came in (decoding not counted)
    search_ms: float = 0.0  # the global ranking and the re-rank
    runtime: str = ""  # what ran the network, and its version ("onnxruntime 1.32.0", "torch 2.14.1")

    @property
    def widened(self) -> bool:
        return self.searched_classes is None or len(self.searched_classes) > 1

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, rank_index: int) -> SearchResult:
        return self.results[rank_index]

    def to_dict(self) -> dict:
        """The JSON form `query --json`, `query --jsonl` and the HTTP API print: the query, the predicted
        classes, the classes searched (null: all), the notes, the ranked results, then how it was asked,
        how long it took and what ran the network."""
        return {"query": self.query, "predicted": [asdict(p) for p in self.predicted],
                "searched_classes": self.searched_classes, "notes": self.notes,
                "results": [r.to_dict() for r in self.results], "params": self.params,
                "forward_ms": self.forward_ms, "search_ms": self.search_ms, "runtime": self.runtime}
