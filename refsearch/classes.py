"""The 1000 ILSVRC-2012 classes, in classifier output order, and labels read from ImageNet-style paths."""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .errors import NotFoundError

_WNID = re.compile(r"n\d{8}")


@lru_cache(maxsize=1)
def _table() -> tuple[tuple[str, ...], tuple[str, ...]]:
    text = resources.files("refsearch").joinpath("data/imagenet_classes.tsv").read_text()
    wnids, names = [], []
    for line in text.splitlines()[1:]:
        index, wnid, name = line.split("\t")
        assert int(index) == len(wnids), "classes table out of order"
        wnids.append(wnid)
        names.append(name)
    return tuple(wnids), tuple(names)


def wnids() -> tuple[str, ...]:
    return _table()[0]


def num_classes() -> int:
    return len(wnids())


@lru_cache(maxsize=1)
def _index_of() -> dict[str, int]:
    return {w: i for i, w in enumerate(wnids())}


def class_index(wnid: str) -> int:
    try:
        return _index_of()[wnid]
    except KeyError:
        raise NotFoundError(f"{wnid!r} is not an ImageNet-1k WordNet id",
                            "a wnid is n and eight digits, like n01440764 (tench)") from None


def is_wnid(text: str) -> bool:
    return text in _index_of()


def class_name(wnid: str) -> str:
    return _table()[1][class_index(wnid)]


def label_from_path(path: Path) -> str | None:
    """The class an ImageNet-style path names: its parent folder (`train/<wnid>/x.JPEG`) or its
    file name's prefix (`<wnid>_tench.JPEG`); None when neither is a known wnid."""
    if is_wnid(path.parent.name):
        return path.parent.name
    match = _WNID.match(path.name)
    if match and is_wnid(match.group(0)):
        return match.group(0)
    return None
