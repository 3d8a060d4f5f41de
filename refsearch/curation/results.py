"""What the curation calls return: small frozen dataclasses in lists that also give pandas-ready rows
(`pandas.DataFrame(result.to_records())`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
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
class CopyCheck:
    """Whether the images `first` and `second` (ids) are copies of one picture, judged from their pixels,
    and why (`refsearch.curation.verify`). The numbers are those measured before a verdict; None where
    the check stopped earlier."""

    first: int
    second: int
    verified: bool
    reason: str  # a sentence: how they were aligned and how their luminance agrees, or what failed
    unreadable: bool = False  # a file could not be read (`reason` names it)
    matches: int | None = None  # keypoint matches between them
    inliers: int | None = None  # of those, the ones the alignment keeps
    scale: float | None = None  # the second's size relative to the first's, for the same content
    rotation: float | None = None  # degrees the second is turned counterclockwise from the first
    overlap_first: float | None = None  # share of the first image that the aligned second covers
    overlap_second: float | None = None  # and of the second covered by the first
    luminance: float | None = None  # correlation of the aligned luminance after a gray-level fit
    detail: float | None = None  # correlation of the luminance's detail (less its blur)
    agreeing: float | None = None  # share of the overlap compared (overlaid or clipped pixels set aside)

    def rows(self) -> list[dict]:
        return [asdict(self)]


@dataclass(frozen=True)
class Member:
    """An image in a group, with its similarity to the group's representative (1.0 for it; the mean of
    the global and the cell-by-cell cosine) and `check`, the pixel verification that it is a copy of the
    representative (None for the representative itself)."""

    id: int
    path: str
    label: str
    similarity: float
    width: int
    height: int
    check: CopyCheck | None = None


@dataclass(frozen=True)
class DuplicateGroup:
    """Copies of one picture. The representative (first member) is the one to keep: the most pixels, then
    the largest file, then the lowest id. Every other member was verified a copy of it."""

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
        rows = []
        for m in self.members:
            row = {"group": self.representative.id, "kind": self.kind, **asdict(m),
                   "representative": m.id == self.representative.id}
            check = row.pop("check") or {}
            rows.append({**row, **{f"check_{key}": check.get(key) for key in _CHECK_COLUMNS}})
        return rows


_CHECK_COLUMNS = [f.name for f in fields(CopyCheck) if f.name not in ("first", "second")]


class DuplicateGroups(Results[DuplicateGroup]):
    """Groups of copies, largest first. `candidate_pairs` counts the pairs whose pixels were checked, and
    `unreadable` holds the checks left unverified because a file could not be read."""

    def __init__(self, groups=(), *, candidate_pairs: int = 0, unreadable=()):
        super().__init__(groups)
        self.candidate_pairs = candidate_pairs
        self.unreadable: Results[CopyCheck] = Results(unreadable)

    def __getitem__(self, key):
        item = list.__getitem__(self, key)
        if isinstance(key, slice):
            return DuplicateGroups(item, candidate_pairs=self.candidate_pairs, unreadable=self.unreadable)
        return item

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
