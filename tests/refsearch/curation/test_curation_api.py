"""The curation calls on an opened Index, against the planted index (see conftest.py)."""
from __future__ import annotations

import pytest

from refsearch import classes


def _groups(planted, groups) -> list[set[str]]:
    return [{planted.relative(m.path) for m in group.members} for group in groups]


def test_exact_duplicates_are_the_identical_files(planted, planted_index):
    groups = planted_index.curation.exact_duplicates()
    assert _groups(planted, groups) == [planted.exact]
    assert groups[0].kind == "exact"
    assert [m.similarity for m in groups[0].members] == [1.0, 1.0]


def test_near_duplicates_are_the_planted_copies_and_nothing_else(planted, planted_index):
    groups = planted_index.curation.near_duplicates()
    assert sorted(_groups(planted, groups), key=len) == [planted.exact, planted.near]
    bus = next(g for g in groups if len(g) == 3)
    assert bus.kind == "near"
    assert planted.relative(bus.representative.path) == "photos/n04146614_school_bus.jpg"  # the largest
    assert bus.representative.similarity == 1.0
    assert all(0.7 <= m.similarity < 1.0 for m in bus.members[1:])


def test_each_copy_carries_why_its_pixels_make_it_one(planted, planted_index):
    groups = planted_index.curation.near_duplicates()
    for group in groups:
        assert group.representative.check is None
        for member in group.members[1:]:
            check = member.check
            assert check.verified and (check.first, check.second) == (group.representative.id, member.id)
            if group.kind == "exact":
                assert check.reason == "identical files"
            else:
                assert "keypoint matches align them" in check.reason


def test_look_alikes_stay_apart_when_every_neighbour_is_checked(planted, planted_index):
    everything = planted_index.curation.near_duplicates(threshold=-1)
    assert sorted(_groups(planted, everything), key=len) == [planted.exact, planted.near]
    assert everything.candidate_pairs > planted_index.curation.near_duplicates().candidate_pairs
    assert everything.unreadable == []


def test_a_stricter_threshold_keeps_only_the_closest_copies(planted, planted_index):
    groups = _groups(planted, planted_index.curation.near_duplicates(threshold=0.999))
    assert groups == [planted.exact]


def test_redundant_ids_keep_one_image_per_group(planted_index):
    groups = planted_index.curation.near_duplicates()
    redundant = groups.redundant_ids()
    assert len(redundant) == 1 + 2
    assert not {g.representative.id for g in groups} & set(redundant)


def test_duplicate_records_have_one_row_per_member(planted_index):
    groups = planted_index.curation.near_duplicates()
    rows = groups.to_records()
    assert len(rows) == sum(len(g) for g in groups)
    assert {row["group"] for row in rows} == {g.representative.id for g in groups}
    assert sum(row["representative"] for row in rows) == len(groups)
    assert set(rows[0]) >= {"group", "kind", "id", "path", "label", "similarity", "width", "height"}


def test_the_planted_outlier_ranks_first(planted, planted_index):
    outliers = planted_index.curation.outliers(n=5)
    assert planted.relative(outliers[0].path) == planted.outlier
    assert outliers[0].score > outliers[1].score
    assert [o.score for o in outliers] == sorted((o.score for o in outliers), reverse=True)


def test_copies_are_listed_once_among_outliers(planted, planted_index):
    listed = [planted.relative(o.path) for o in planted_index.curation.outliers(n=len(planted_index))]
    assert len(listed) == len(planted_index) - 1 - 2  # the Persian cat's copy and the bus's two copies
    assert "photos/n04146614_school_bus.jpg" in listed
    assert not planted.near - {"photos/n04146614_school_bus.jpg"} & set(listed)


def test_an_outliers_nearest_neighbour_is_not_its_own_copy(planted_index):
    bus = next(g for g in planted_index.curation.near_duplicates() if len(g) == 3)
    outlier = next(o for o in planted_index.curation.outliers(n=len(planted_index)) if o.id == bus.representative.id)
    assert outlier.nearest_id not in bus.ids


def test_the_mislabelled_photo_is_a_label_issue(planted, planted_index):
    issues = planted_index.curation.label_issues(min_confidence=0.9)
    flagged = {planted.relative(issue.path): issue for issue in issues}
    assert planted.mislabelled in flagged
    issue = flagged[planted.mislabelled]
    assert issue.label == "n07753592"
    assert classes.class_name(issue.suggested) == "daisy"
    assert issue.reason == "prediction" and issue.confidence >= 0.9
    assert planted.outlier not in flagged  # its label is the prediction itself


def test_a_copy_filed_under_another_class_is_disputed_by_its_neighbours(planted, planted_index):
    issues = planted_index.curation.label_issues(neighbours=2, min_confidence=1.01)  # neighbours' evidence only
    issue = next(i for i in issues if planted.relative(i.path) == planted.mislabelled_copy)
    assert issue.reason == "neighbours"
    assert issue.label == "n03345487" and issue.suggested == "n04146614"  # fire engine, school bus
    assert issue.neighbour_agreement == 1.0


def test_clusters_cover_every_image_once(planted_index):
    clusters = planted_index.curation.clusters(n=3)
    members = [m for cluster in clusters for m in cluster.members]
    assert sorted(members) == sorted(r.id for r in planted_index.records())
    assert [len(c) for c in clusters] == sorted((len(c) for c in clusters), reverse=True)
    assert [c.number for c in clusters] == list(range(len(clusters)))
    assert all(c.representative == c.members[0] for c in clusters)
    assert len(clusters.to_records()) == len(planted_index)


def test_clusters_refuse_more_clusters_than_images(planted_index):
    with pytest.raises(ValueError, match="clusters"):
        planted_index.curation.clusters(n=len(planted_index) + 1)


def test_similar_to_an_indexed_image_finds_its_copies_first(planted, planted_index):
    bus = next(g for g in planted_index.curation.near_duplicates() if len(g) == 3)
    found = planted_index.curation.similar(bus.representative.id, k=3)
    assert bus.representative.id not in [n.id for n in found]
    assert {n.id for n in found[:2]} == set(bus.ids[1:])
    assert [n.similarity for n in found] == sorted((n.similarity for n in found), reverse=True)


def test_similar_to_a_new_image(planted, planted_index, tmp_path):
    from PIL import Image

    query = tmp_path / "query.jpg"
    Image.open(planted.root / "photos" / "n02108089_boxer.jpg").convert("L").rotate(4).save(query)
    found = planted_index.curation.similar(query, k=2)
    assert planted.relative(found[0].path) == "photos/n02108089_boxer.jpg"
    assert found[0].similarity > 0.9


def test_similar_refuses_an_unknown_id(planted_index):
    with pytest.raises(KeyError):
        planted_index.curation.similar(10_000, k=2)
