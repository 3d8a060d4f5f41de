"""Copies verified from pixels (`refsearch.curation.verify`): edited copies pass with their reasons,
look-alike photos of related classes do not, unreadable files leave the pair unverified and say why."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from copies import edited_copy

from refsearch.curation.verify import MIN_CORRELATION, CopyVerifier
from refsearch.store import ImageRecord

DEMO = Path(__file__).resolve().parents[3] / "index_builds" / "demo" / "photos"
# Different photos of related classes, which the similarity of descriptors used to group.
LOOK_ALIKES = [("n02128385_leopard.jpg", "n02128757_snow_leopard.jpg"),
               ("n02128757_snow_leopard.jpg", "n02130308_cheetah.jpg"),
               ("n02128385_leopard.jpg", "n02128925_jaguar.jpg"),
               ("n02110063_malamute.jpg", "n02110185_Siberian_husky.jpg"),
               ("n02123045_tabby.jpg", "n02123159_tiger_cat.jpg"),
               ("n07747607_orange.jpg", "n07749582_lemon.jpg")]
# Look-alike pairs of the ImageNet sample that semantic similarity grouped at the former default.
SAMPLE_LOOK_ALIKES = [("n01558993_robin", "n01560419_bulbul"),
                      ("n02086079_Pekinese", "n02085782_Japanese_spaniel"),
                      ("n02095314_wire-haired_fox_terrier", "n02095570_Lakeland_terrier"),
                      ("n02128757_snow_leopard", "n02130308_cheetah"),
                      ("n03661043_library", "n02870880_bookcase")]


def record(path: Path, image_id: int = 0, digest: str = "") -> ImageRecord:
    return ImageRecord(id=image_id, path=str(path), label="n01440764", label_source="predicted",
                       prediction="n01440764", confidence=1.0, width=0, height=0, digest=digest, file_size=0,
                       mtime_ns=0)


@pytest.fixture(scope="module")
def verifier() -> CopyVerifier:
    return CopyVerifier(workers=1)


EDITS = {"cropped gray caption": {"crop": 0.12, "gray": True, "caption": "SUMMER SALE TODAY"},
         "30% JPEG 20": {"scale": 0.3, "quality": 20},
         "rotated and darker": {"rotate": 4, "brightness": 0.7},
         "all at once": {"crop": 0.1, "scale": 0.35, "quality": 20, "gray": True, "caption": "LOOK AT THIS",
                         "rotate": -3}}


@pytest.mark.parametrize("edit", list(EDITS))
def test_edited_copies_are_verified_with_their_reason(verifier, tmp_path, edit):
    original = DEMO / "n02110958_pug.jpg"
    copy = edited_copy(original, tmp_path / "copy.jpg", **EDITS[edit])
    check = verifier.check(record(original, 1), record(copy, 2))
    assert check.verified, check.reason
    assert (check.first, check.second) == (1, 2) and not check.unreadable
    assert check.inliers >= 8 and check.matches >= check.inliers
    assert min(check.luminance, check.detail) >= MIN_CORRELATION
    assert "keypoint matches align them" in check.reason and "luminance correlation" in check.reason
    expected_scale = EDITS[edit].get("scale", 1.0)
    assert check.scale == pytest.approx(expected_scale, rel=0.1)


def test_the_alignment_measures_the_edit(verifier, tmp_path):
    original = DEMO / "n02110958_pug.jpg"
    check = verifier.check(record(original), record(edited_copy(original, tmp_path / "c.jpg", crop=0.1,
                                                                rotate=5)))
    assert check.verified and check.rotation == pytest.approx(5, abs=0.5)  # counterclockwise, as PIL turns it
    assert check.overlap_second > 0.95 and 0.3 < check.overlap_first < 0.6  # a crop of the middle
    backwards = verifier.check(record(tmp_path / "c.jpg"), record(original))
    assert backwards.verified and backwards.rotation == pytest.approx(-5, abs=0.5)


@pytest.mark.parametrize("first,second", LOOK_ALIKES)
def test_look_alike_photos_are_not_copies(verifier, first, second):
    check = verifier.check(record(DEMO / first), record(DEMO / second))
    assert not check.verified and not check.unreadable
    assert check.reason


@pytest.mark.parametrize("first,second", SAMPLE_LOOK_ALIKES)
def test_the_samples_look_alikes_are_not_copies(verifier, sample_dir, first, second):
    check = verifier.check(record(sample_dir / f"{first}.JPEG"), record(sample_dir / f"{second}.JPEG"))
    assert not check.verified, check.reason


def test_an_unreadable_file_leaves_the_pair_unverified_and_says_why(verifier, tmp_path):
    original = record(DEMO / "n02110958_pug.jpg")
    gone = verifier.check(original, record(tmp_path / "gone.jpg"))
    assert not gone.verified and gone.unreadable
    assert gone.reason == f"cannot read {tmp_path / 'gone.jpg'}: no such file"
    (tmp_path / "torn.jpg").write_bytes((DEMO / "n02110958_pug.jpg").read_bytes()[:2000])
    torn = verifier.check(original, record(tmp_path / "torn.jpg"))
    assert not torn.verified and torn.unreadable and "torn.jpg" in torn.reason


def test_identical_files_are_copies_without_decoding(verifier, tmp_path):
    # Neither path exists: equal digests decide alone.
    check = verifier.check(record(tmp_path / "a.jpg", 1, "ab" * 16), record(tmp_path / "b.jpg", 2, "ab" * 16))
    assert check.verified and check.reason == "identical files"


def test_a_flat_image_cannot_be_aligned(verifier, tmp_path, synthetic_image):
    flat = tmp_path / "flat.png"
    synthetic_image(size=(200, 150), pattern="gradient").save(flat)
    check = verifier.check(record(flat), record(DEMO / "n02110958_pug.jpg"))
    assert not check.verified and not check.unreadable


def test_checking_many_keeps_the_order(tmp_path):
    original = record(DEMO / "n02110958_pug.jpg", 1)
    copy = record(edited_copy(DEMO / "n02110958_pug.jpg", tmp_path / "c.jpg", scale=0.5), 2)
    other = record(DEMO / "n02108089_boxer.jpg", 3)
    pairs = [(original, copy), (original, other), (copy, other), (original, replace(copy, id=4))] * 20
    done = []
    checks = CopyVerifier(workers=2).check_many(pairs, on_done=done.append)
    assert [c.verified for c in checks] == [True, False, False, True] * 20
    assert [(c.first, c.second) for c in checks] == [(a.id, b.id) for a, b in pairs]
    assert sum(done) == len(pairs)
