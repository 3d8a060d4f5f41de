"""The classes' WordNet hypernym table and the Wu-Palmer similarities derived from it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refsearch import classes, taxonomy

WORDNET = Path("/usr/share/wordnet")  # Debian's wordnet-base
ESKIMO_DOG, HUSKY, TABBY, GREAT_WHITE_SHARK, TENCH = "n02109961", "n02110185", "n02123045", "n01484850", "n01440764"


def _similarity(a: str, b: str) -> float:
    return float(taxonomy.wu_palmer_matrix()[classes.class_index(a), classes.class_index(b)])


def test_every_class_reaches_entity_through_the_table():
    graph = taxonomy.hypernyms()
    roots = [wnid for wnid, parents in graph.items() if not parents]
    assert roots == ["n00001740"]  # entity
    assert set(classes.wnids()) <= set(graph)
    assert all(parent in graph for parents in graph.values() for parent in parents)


def test_wu_palmer_is_symmetric_one_on_the_diagonal_and_follows_meaning():
    matrix = taxonomy.wu_palmer_matrix()
    assert matrix.shape == (1000, 1000) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, matrix.T)
    np.testing.assert_array_equal(np.diag(matrix), 1)
    assert 0 < matrix.min() and matrix.max() == 1
    assert _similarity(ESKIMO_DOG, HUSKY) > _similarity(ESKIMO_DOG, TABBY) > _similarity(ESKIMO_DOG, GREAT_WHITE_SHARK)
    assert _similarity(TENCH, GREAT_WHITE_SHARK) > _similarity(TENCH, ESKIMO_DOG)


def test_expected_similarity_weighs_each_class_by_its_probability():
    probabilities = np.zeros(1000, np.float32)
    probabilities[classes.class_index(ESKIMO_DOG)] = 0.75
    probabilities[classes.class_index(TENCH)] = 0.25
    expected = taxonomy.expected_similarity(probabilities)
    for wnid in (HUSKY, TABBY, GREAT_WHITE_SHARK):
        assert expected[classes.class_index(wnid)] == pytest.approx(
            0.75 * _similarity(ESKIMO_DOG, wnid) + 0.25 * _similarity(TENCH, wnid), rel=1e-5)
        sharp = taxonomy.expected_similarity(probabilities, 4)[classes.class_index(wnid)]
        assert sharp == pytest.approx(0.75 * _similarity(ESKIMO_DOG, wnid) ** 4 + 0.25 * _similarity(TENCH, wnid) ** 4,
                                      rel=1e-5)


def test_the_table_is_derived_from_wordnet_noun_data(tmp_path, monkeypatch):
    # A WordNet data.noun in miniature: entity <- animal <- dog (and pet) <- two classes, one of them also
    # an instance of a second hypernym.
    lines = ["  1 licence header line  ",
             "00000001 03 n 01 entity 0 000 | that which exists  ",
             "00000002 05 n 01 animal 0 001 @ 00000001 n 0000 | a living organism  ",
             "00000003 05 n 02 dog 0 domestic_dog 0 002 @ 00000002 n 0000 ~ 00000005 n 0000 | a canine  ",
             "00000004 05 n 01 pet 0 001 @ 00000002 n 0000 | an animal kept  ",
             "00000005 05 n 01 pug 0 002 @ 00000003 n 0000 @i 00000004 n 0000 | a small dog  ",
             "00000006 05 n 01 tench 0 001 @ 00000002 n 0000 | a fish  "]
    (tmp_path / "data.noun").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(classes, "wnids", lambda: ("n00000005", "n00000006"))
    table = taxonomy.derive_table(tmp_path).splitlines()
    assert table == ["wnid\thypernyms\tname", "n00000001\t\tentity", "n00000002\tn00000001\tanimal",
                     "n00000003\tn00000002\tdog", "n00000004\tn00000002\tpet",
                     "n00000005\tn00000003,n00000004\tpug", "n00000006\tn00000002\ttench"]
    monkeypatch.setattr(classes, "wnids", lambda: ("n00000009",))
    with pytest.raises(KeyError, match="n00000009 is not a noun synset"):
        taxonomy.derive_table(tmp_path)


@pytest.mark.skipif(not (WORDNET / "data.noun").is_file(), reason="WordNet (Debian's wordnet-base) is not installed")
def test_the_shipped_table_is_what_wordnet_gives():
    from importlib import resources

    shipped = resources.files("refsearch").joinpath(taxonomy.TABLE).read_text()
    assert taxonomy.derive_table(WORDNET) == shipped
