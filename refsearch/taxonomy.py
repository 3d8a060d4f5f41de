"""What the 1000 ImageNet classes mean to each other: their WordNet hypernym graph and Wu-Palmer similarity.

The graph ships as `data/imagenet_hypernyms.tsv`: every WordNet 3.0 noun synset on a hypernym path from a
class up to `entity`, with its direct hypernyms (a synset may have several) and its first lemma. It was
derived once from Debian's `wordnet-base` by `python -m refsearch.taxonomy /usr/share/wordnet`, which a test
repeats where that package is installed.

Wu-Palmer similarity of two classes is 2·depth(lcs) / (depth(a) + depth(b)), with depth the longest path
from `entity` (depth 1) and lcs the deepest common hypernym (a class counts as its own hypernym): 1 for a
class and itself, and about 0.1 for a fish and a screwdriver.
"""
from __future__ import annotations

import sys
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from . import classes

TABLE = "data/imagenet_hypernyms.tsv"
_HEADER = "wnid\thypernyms\tname"


@lru_cache(maxsize=1)
def hypernyms() -> dict[str, tuple[str, ...]]:
    """Each synset of the table, by wnid, with its direct hypernyms (none for `entity`)."""
    text = resources.files("refsearch").joinpath(TABLE).read_text()
    return {wnid: tuple(parents.split(",")) if parents else () for wnid, parents, _ in
            (line.split("\t") for line in text.splitlines()[1:])}


def _depths(graph: dict[str, tuple[str, ...]]) -> dict[str, int]:
    depths: dict[str, int] = {}

    def depth(wnid: str) -> int:
        if wnid not in depths:
            depths[wnid] = 1 + max((depth(p) for p in graph[wnid]), default=0)
        return depths[wnid]

    for wnid in graph:
        depth(wnid)
    return depths


@lru_cache(maxsize=1)
def wu_palmer_matrix() -> np.ndarray:
    """(1000, 1000) float32 Wu-Palmer similarities between the classes, in classifier output order."""
    graph = hypernyms()
    depths = _depths(graph)
    members: dict[str, list[int]] = {}  # synset -> the classes below it (itself included)
    for row, wnid in enumerate(classes.wnids()):
        seen, stack = set(), [wnid]
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                members.setdefault(node, []).append(row)
                stack.extend(graph[node])
    lcs_depth = np.zeros((classes.num_classes(),) * 2, np.float32)
    for node in sorted(members, key=depths.__getitem__):  # deeper common hypernyms overwrite shallower ones
        rows = np.array(members[node])
        lcs_depth[np.ix_(rows, rows)] = depths[node]
    class_depths = np.array([depths[w] for w in classes.wnids()], np.float32)
    return 2 * lcs_depth / (class_depths[:, None] + class_depths[None, :])


@lru_cache(maxsize=4)
def _sharpened(sharpness: float) -> np.ndarray:
    return wu_palmer_matrix() ** np.float32(sharpness)


def expected_similarity(probabilities: np.ndarray, sharpness: float = 1.0) -> np.ndarray:
    """Each class's Wu-Palmer similarity to the query's class, raised to `sharpness`, expected under the
    predicted distribution."""
    return probabilities @ _sharpened(float(sharpness))


def derive_table(wordnet_dir: str | Path) -> str:
    """The table's text from a WordNet 3.0 database folder (its `data.noun`)."""
    synsets: dict[str, tuple[list[str], str]] = {}
    with open(Path(wordnet_dir) / "data.noun", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("  "):  # the licence header
                continue
            fields = line.split(" | ", 1)[0].split()
            offset, word_count = fields[0], int(fields[3], 16)
            name = fields[4].replace("_", " ")
            pointer_start = 4 + 2 * word_count
            pointers = int(fields[pointer_start])
            parents = [f"n{fields[pointer_start + 2 + 4 * i]}" for i in range(pointers)
                       if fields[pointer_start + 1 + 4 * i] in ("@", "@i")]
            synsets[f"n{offset}"] = (parents, name)
    rows, stack = {}, list(classes.wnids())
    while stack:
        wnid = stack.pop()
        if wnid not in rows:
            if wnid not in synsets:
                raise KeyError(f"{wnid} is not a noun synset of this WordNet (ImageNet needs WordNet 3.0)")
            rows[wnid] = synsets[wnid]
            stack.extend(synsets[wnid][0])
    return "".join([_HEADER + "\n"] + [f"{w}\t{','.join(rows[w][0])}\t{rows[w][1]}\n" for w in sorted(rows)])


if __name__ == "__main__":
    sys.stdout.write(derive_table(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/wordnet"))
