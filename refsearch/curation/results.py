"""What the curation calls return: small frozen dataclasses in lists that also give pandas-ready rows
(`pandas.DataFrame(result.to_records())`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class Results(list, Generic[T]):
    """A list of results; `to_records()` flattens it into one dict per row."""

    def __getitem__(self, key):
        item = super().__getitem__(key)
        return type(self)(item) if isinstance(key, slice) else item

    def to_records(self) -> list[dict]:
        rows: list[dict] = []
        for item in self:
            rows.extend(item.rows())
        return rows


@dataclass(frozen=True)
class Member:
    """An image in a group, with its similarity to the group's representative (1.0 for it; see
    `Index.near_duplicates` for what it measures)."""

    id: int
    path: str
    label: str
    similarity: float
    width: int
    height: int


@dataclass(frozen=True)
class DuplicateGroup:
    """Copies of one picture. The representative (first member) is the one to keep: the most pixels, then
    the largest file, then the lowest id."""

    kind: str  # "exact" (identical files) or "near" (edited copies)
    members: tuple[Member, ...]

    @property
    def representative(self) -> Member:
        return self.members[0]

    @property
    def ids(self) -> list[int]:
        return [m.id for m in self.members]

    def __len__(self) -> int:
        return len(self.members)

    def rows(self) -> list[dict]:
        return [{"group": self.representative.id, "kind": self.kind, **asdict(m),
                 "representative": m.id == self.representative.id} for m in self.members]


class DuplicateGroups(Results[DuplicateGroup]):
    def redundant_ids(self) -> list[int]:
        """Every member except the representatives: what to drop to keep one image of each group."""
        return sorted(m.id for group in self for m in group.members[1:])


@dataclass(frozen=True)
class Outlier:
    """An image unlike its neighbours: `score` is 1 - the mean similarity to its nearest neighbours
    (its own near-duplicates left out), so higher is more unusual."""

    id: int
    path: str
    label: str
    score: float
    nearest_id: int
    nearest_similarity: float

    def rows(self) -> list[dict]:
        return [asdict(self)]


@dataclass(frozen=True)
class LabelIssue:
    """An image whose stored label disagrees with the network's confident prediction, or with the label
    most of its nearest neighbours carry. `suggested` is the label the evidence points to."""

    id: int
    path: str
    label: str
    label_source: str
    suggested: str
    reason: str  # "prediction", "neighbours" or "prediction and neighbours"
    confidence: float  # the network's probability for its predicted class
    neighbour_agreement: float  # share of the nearest neighbours carrying `suggested`

    def rows(self) -> list[dict]:
        return [asdict(self)]


@dataclass(frozen=True)
class Cluster:
    """A k-means cluster of the global descriptors. The representative is the member nearest the centre;
    members are ordered by their similarity to the centre, nearest first."""

    number: int
    members: tuple[int, ...]
    representative_path: str
    cohesion: float  # mean cosine similarity of the members to the centre

    @property
    def representative(self) -> int:
        return self.members[0]

    def __len__(self) -> int:
        return len(self.members)

    def rows(self) -> list[dict]:
        return [{"cluster": self.number, "id": member, "representative": member == self.representative}
                for member in self.members]


@dataclass(frozen=True)
class Neighbour:
    id: int
    path: str
    label: str
    similarity: float

    def rows(self) -> list[dict]:
        return [asdict(self)]
