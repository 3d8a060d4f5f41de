"""The 1000 ImageNet classes and labels read from ImageNet-style paths."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from refsearch import classes


def test_the_table_holds_the_1000_classes_in_classifier_order():
    wnids = classes.wnids()
    assert classes.num_classes() == len(wnids) == len(set(wnids)) == 1000
    assert list(wnids) == sorted(wnids)  # ILSVRC-2012 output order is the sorted WordNet ids
    assert wnids[0] == "n01440764" and classes.class_name("n01440764") == "tench"
    assert classes.class_index("n15075141") == 999
    assert classes.class_name(wnids[classes.class_index("n02123045")]) == "tabby"


def test_the_table_matches_the_sample_datasets_list(sample_dir):
    with open(sample_dir / "classes.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [(int(r["index"]), r["wnid"]) for r in rows] == list(enumerate(classes.wnids()))
    assert [r["name"] for r in rows] == [classes.class_name(w) for w in classes.wnids()]


def test_unknown_wnids_are_refused_with_an_example():
    with pytest.raises(KeyError, match="not an ImageNet-1k WordNet id"):
        classes.class_index("n99999999")
    with pytest.raises(KeyError):
        classes.class_name("tabby")
    assert classes.is_wnid("n02123045") and not classes.is_wnid("n99999999") and not classes.is_wnid("cat")


@pytest.mark.parametrize("path, label", [
    ("train/n02123045/n02123045_1234.JPEG", "n02123045"),  # folder
    ("photos/n02123045_tabby.jpg", "n02123045"),  # file name prefix
    ("n01440764/n02123045_tabby.jpg", "n01440764"),  # the folder wins over the file name
    ("photos/n99999999_unknown.jpg", None),  # looks like a wnid, but is not one of the 1000
    ("photos/cat.jpg", None),
    ("photos/my_n02123045.jpg", None),  # only a prefix counts
    ("n02123045x/cat.jpg", None),
])
def test_label_from_path(path, label):
    assert classes.label_from_path(Path(path)) == label


def test_every_demo_photo_is_labelled_by_its_file_name(demo_photos):
    for photo in demo_photos:
        assert classes.label_from_path(photo) == photo.name[:9]
