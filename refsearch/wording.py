"""Counts in messages: "1 image", "2 images", "3 more classes"."""
from __future__ import annotations

_PLURALS = {"class": "classes", "copy": "copies"}


def count(n: int, noun: str) -> str:
    """`n` and the noun (its last word plural unless n is 1)."""
    if n != 1:
        head, _, last = noun.rpartition(" ")
        noun = f"{head} {_PLURALS.get(last, last + 's')}".lstrip()
    return f"{n} {noun}"
