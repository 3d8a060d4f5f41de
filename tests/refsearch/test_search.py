"""Searching an index: class restriction and widening, self-matches, the re-rank, opening checks, and
the issue's done criterion (a degraded grayscale copy finds its original at rank 1)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import refsearch
from refsearch import classes
from refsearch.config import IndexConfig, SearchSettings
from refsearch.errors import ConfigMismatchError, IndexStateError, InvalidArgumentError

DEMO = Path(__file__).resolve().parents[2] / "index_builds" / "demo" / "photos"
DALMATIAN, TABBY, LEMON, VOLCANO = "n02110341", "n02123045", "n07749582", "n09472597"
TENCH = "n01440764"  # a class the grouped index does not hold

# Folders named by wnid label every photo in them with that class.
GROUPS = {
    DALMATIAN: ["n02110341_dalmatian.jpg", "n02108089_boxer.jpg", "n02099712_Labrador_retriever.jpg",
                "n02110958_pug.jpg"],
    TABBY: ["n02123045_tabby.jpg", "n02123159_tiger_cat.jpg", "n02123394_Persian_cat.jpg",
            "n02123597_Siamese_cat.jpg"],
    LEMON: ["n07753592_banana.jpg", "n07747607_orange.jpg", "n07745940_strawberry.jpg"],  # no lemon here...
    VOLCANO: ["n09472597_volcano.jpg", "n07749582_lemon.jpg"],  # ...but mislabelled here
}
MISC = {"pizza.jpg": "n07873807_pizza.jpg", "pizza-copy.jpg": "n07873807_pizza.jpg"}


@pytest.fixture(scope="module")
def grouped_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("grouped") / "photos"
    for wnid, photos in GROUPS.items():
        (root / wnid).mkdir(parents=True)
        for photo in photos:
            shutil.copy2(DEMO / photo, root / wnid / photo.split("_", 1)[1])
    (root / "misc").mkdir()
    for name, photo in MISC.items():
        shutil.copy2(DEMO / photo, root / "misc" / name)
    return root.resolve()


@pytest.fixture(scope="module")
def grouped(grouped_root):
    """15 photos in wnid folders: dalmatian (four dogs), tabby (four cats), lemon (three other fruit),
    volcano (the volcano and, mislabelled, the lemon), and two unlabelled copies of one pizza photo;
    opened to search a class alone when it holds at least three images."""
    output = grouped_root.parent / "grouped.index"
    refsearch.build_index(grouped_root, output, progress=False)
    with refsearch.Index.open(output, search=SearchSettings(min_class_images=3)) as index:
        yield index


def _labels(response) -> set[str]:
    return {r.label for r in response}


# -- class restriction ----------------------------------------------------------------------------
def test_the_predicted_class_restricts_the_search(grouped, degrade):
    response = grouped.search(degrade(DEMO / "n02110341_dalmatian.jpg"), k=4, rescue_candidates=0)
    assert response.predicted[0].wnid == DALMATIAN
    assert response.searched_classes == [DALMATIAN] and not response.widened and response.notes == []
    assert len(response) == 4 and _labels(response) == {DALMATIAN}
    assert response[0].path.endswith(f"{DALMATIAN}/dalmatian.jpg")


def test_a_named_class_overrides_the_prediction(grouped, degrade):
    query = degrade(DEMO / "n02110341_dalmatian.jpg")
    response = grouped.search(query, k=3, class_wnid=LEMON, rescue_candidates=0)
    assert response.searched_classes == [LEMON] and response.notes == []
    assert _labels(response) == {LEMON} and len(response) == 3
    assert response.params["class"] == LEMON


def test_a_named_class_returns_only_that_class_by_default(grouped, degrade):
    response = grouped.search(degrade(DEMO / "n02110341_dalmatian.jpg"), k=3, class_wnid=LEMON)
    assert _labels(response) == {LEMON}


def test_a_near_copy_labelled_in_another_class_is_rescued(grouped, grouped_root, degrade):
    query = degrade(DEMO / "n07749582_lemon.jpg")
    strict = grouped.search(query, k=2, rescue_candidates=0)
    assert strict.predicted[0].wnid == LEMON and strict.searched_classes == [LEMON]
    assert _labels(strict) == {LEMON} and strict.notes == []
    rescued = grouped.search(query, k=2)
    assert rescued.params["rescue_candidates"] == 20 and rescued.searched_classes == [LEMON]
    assert rescued[0].path == str(grouped_root / VOLCANO / "lemon.jpg")
    assert len(rescued.notes) == 1 and rescued.notes[0].startswith("also ranked ")
    assert rescued.notes[0].endswith(
        "from other classes, closer to the query than any image of the searched classes")


@pytest.mark.parametrize("choice", ["probability", "taxonomy"])
def test_too_small_a_class_widens(grouped, degrade, choice):
    with refsearch.Index.open(grouped.path, search=SearchSettings(min_class_images=6, class_choice=choice)) as index:
        response = index.search(degrade(DEMO / "n02110341_dalmatian.jpg"), k=6, rescue_candidates=0)
    assert response.widened and response.searched_classes[0] == DALMATIAN and len(response.searched_classes) >= 2
    which = "the nearest in meaning" if choice == "taxonomy" else "the next most probable"
    added = len(response.searched_classes) - 1
    assert response.notes == [f"class {DALMATIAN} (dalmatian) holds 4 images, fewer than 6: widened to {added} more "
                              f"class{'es' if added > 1 else ''} ({which})"]
    assert len(response) == 6
    held = {r.label for r in grouped.records()}
    assert set(response.searched_classes) <= held  # only classes that hold images are added
    if choice == "taxonomy":
        assert response.searched_classes[1] == TABBY  # cats are nearer dogs than fruit, pizza or a volcano are


def test_the_top_k_does_not_depend_on_k(grouped, degrade, synthetic_image):
    queries = [degrade(DEMO / "n02110341_dalmatian.jpg"), degrade(DEMO / "n07749582_lemon.jpg"),
               synthetic_image((80, 60), "RGB", "checker")]
    with refsearch.Index.open(grouped.path) as widening:  # the default settings widen every class of this index
        for index in (grouped, widening):
            for query in queries:
                for options in ({}, {"class_wnid": TENCH}, {"exclude_self": True}, {"rescue_candidates": 0}):
                    longest = [(r.rank, r.id, r.score) for r in index.search(query, k=12, **options)]
                    for k in (1, 3, 5):
                        assert [(r.rank, r.id, r.score) for r in index.search(query, k=k, **options)] == longest[:k]


def test_when_the_searched_classes_run_out_the_rest_come_from_all_classes(grouped, degrade):
    response = grouped.search(degrade(DEMO / "n02110341_dalmatian.jpg"), k=20)
    assert response.searched_classes == [DALMATIAN] and not response.widened
    assert response.notes == ["the searched classes hold 4 images to rank; ranks 5 to 15 come from all classes",
                              "only 15 images to rank (k=20)"]
    assert len(response) == 15 and [r.rank for r in response] == list(range(1, 16))
    assert _labels(response.results[:4]) == {DALMATIAN} and DALMATIAN not in _labels(response.results[4:])
    assert {r.path for r in response} == {r.path for r in grouped.records()}


def test_an_empty_named_class_still_returns_results(grouped, synthetic_image):
    response = grouped.search(synthetic_image((96, 96), "L", "noise"), k=2, class_wnid=TENCH)
    assert len(response) == 2
    assert response.searched_classes == [TENCH] and TENCH not in _labels(response)
    assert response.notes == [f"class {TENCH} (tench) holds 0 images to rank; ranks 1 to 2 come from all classes"]


def test_a_named_class_is_searched_alone_and_ranked_first(grouped, degrade):
    # the volcano class holds two photos, fewer than the three that make a predicted class searched alone
    volcano = {r.id for r in grouped.records() if r.label == VOLCANO}
    response = grouped.search(degrade(DEMO / "n02123394_Persian_cat.jpg"), k=4, class_wnid=VOLCANO)
    assert response.searched_classes == [VOLCANO] and not response.widened
    assert {r.id for r in response.results[:2]} == volcano and not volcano & {r.id for r in response.results[2:]}
    assert response.notes == [f"class {VOLCANO} (volcano) holds 2 images to rank; ranks 3 to 4 come from all "
                              "classes"]


@pytest.mark.parametrize("options", [{}, {"any_class": True}, {"class_wnid": TENCH}, {"rerank": False}])
def test_never_empty_from_a_non_empty_index(grouped, synthetic_image, options):
    for pattern in ("noise", "checker", "gradient"):
        response = grouped.search(synthetic_image((80, 60), "RGB", pattern), k=1, **options)
        assert len(response) == 1


def test_any_class_searches_everything_without_class_notes(grouped, degrade):
    response = grouped.search(degrade(DEMO / "n02110341_dalmatian.jpg"), k=15, any_class=True)
    assert response.searched_classes is None and response.notes == []
    assert {r.path for r in response} == {r.path for r in grouped.records()}


def test_bad_arguments_are_refused(grouped):
    image = Image.new("L", (64, 64))
    with pytest.raises(ValueError, match="k must be at least 1"):
        grouped.search(image, k=0)
    with pytest.raises(KeyError, match="not an ImageNet-1k WordNet id"):
        grouped.search(image, class_wnid="n00000000")


# -- the query itself -----------------------------------------------------------------------------
def test_an_indexed_file_finds_itself_first_and_exclude_self_drops_it(grouped, grouped_root):
    query = grouped_root / LEMON / "orange.jpg"
    response = grouped.search(query, k=3)
    assert response[0].path == str(query) and response[0].semantic < 0.01
    # d_lum is at its minimum, 0.5, when every matched histogram correlates perfectly
    assert response[0].luminance == pytest.approx(0.5, abs=0.01)
    excluded = grouped.search(query, k=3, exclude_self=True)
    assert len(excluded) == 3 and str(query) not in [r.path for r in excluded]
    assert [r.rank for r in excluded] == [1, 2, 3]


def test_every_indexed_copy_of_the_query_counts_as_itself(grouped, grouped_root):
    copies = {str(grouped_root / "misc" / "pizza.jpg"), str(grouped_root / "misc" / "pizza-copy.jpg")}
    # the demo original is not in the index, but its bytes are, twice
    response = grouped.search(DEMO / "n07873807_pizza.jpg", k=3, any_class=True)
    assert {r.path for r in response[:2]} == copies
    excluded = grouped.search(DEMO / "n07873807_pizza.jpg", k=3, any_class=True, exclude_self=True)
    assert len(excluded) == 3 and not copies & {r.path for r in excluded}


def test_self_comes_first_even_outside_the_searched_class(grouped, grouped_root):
    query = grouped_root / TABBY / "Siamese_cat.jpg"
    response = grouped.search(query, k=2, class_wnid=LEMON, rescue_candidates=0)
    assert response[0].path == str(query)
    assert response[1].label == LEMON


def test_the_same_photo_as_an_image_is_not_recognised_as_itself_but_still_ranks_first(grouped, grouped_root):
    query = grouped_root / DALMATIAN / "boxer.jpg"
    colour = grouped.search(Image.open(query), k=4, exclude_self=True)
    assert colour[0].path == str(query)  # no file, no digest: nothing to exclude
    gray = grouped.search(np.asarray(Image.open(query).convert("L")), k=4, exclude_self=True)
    # search works on luminance: the colour photo and its gray version rank alike
    assert [r.path for r in gray] == [r.path for r in colour]
    np.testing.assert_allclose([r.score for r in gray], [r.score for r in colour], atol=1e-4)


def test_an_index_of_only_the_query_cannot_exclude_it(tmp_path, copy_photos):
    photo = copy_photos(tmp_path / "one", 1)[0]
    refsearch.build_index(tmp_path / "one", tmp_path / "one.index", progress=False)
    with refsearch.Index.open(tmp_path / "one.index") as index:
        assert index.search(photo, k=3)[0].path == str(photo.resolve())
        with pytest.raises(IndexStateError, match="no image other than the query"):
            index.search(photo, k=1, exclude_self=True)


# -- ranking --------------------------------------------------------------------------------------
def test_results_are_ordered_by_the_combined_score(grouped, degrade):
    response = grouped.search(degrade(DEMO / "n02123597_Siamese_cat.jpg"), k=15, any_class=True)
    scores = [r.score for r in response]
    assert scores == sorted(scores)
    for r in response:
        assert r.score == pytest.approx(r.semantic + 0.25 * r.luminance, abs=2e-5)
        assert 0 <= r.semantic <= 1 and 0.5 - 1e-4 <= r.luminance <= 1.5 + 1e-4
        assert r.label_name == classes.class_name(r.label)


def test_the_luminance_weight_changes_the_score(grouped, degrade):
    query = degrade(DEMO / "n02123597_Siamese_cat.jpg")
    plain = grouped.search(query, k=15, any_class=True, luminance_weight=0.0)
    assert [r.score for r in plain] == [r.semantic for r in plain]
    heavy = grouped.search(query, k=15, any_class=True, luminance_weight=10.0)
    for r in heavy:
        assert r.score == pytest.approx(r.semantic + 10 * r.luminance, abs=1e-3)
    assert heavy.params["luminance_weight"] == 10.0


def test_global_only_keeps_the_global_order(grouped, degrade):
    response = grouped.search(degrade(DEMO / "n02123597_Siamese_cat.jpg"), k=15, any_class=True, rerank=False)
    sims = [r.global_similarity for r in response]
    assert sims == sorted(sims, reverse=True)
    assert response.params["rerank"] is False


def test_only_the_global_candidates_are_re_ranked(grouped, degrade):
    query = degrade(DEMO / "n02123597_Siamese_cat.jpg")
    global_top5 = grouped.search(query, k=5, any_class=True, rerank=False)
    reranked = grouped.search(query, k=5, any_class=True, global_candidates=5)
    assert {r.id for r in reranked} == {r.id for r in global_top5}
    assert [r.score for r in reranked] == sorted(r.score for r in reranked)
    # fewer candidates than results cannot be re-ranked into them
    with pytest.raises(InvalidArgumentError, match=r"global candidates \(2\) must be at least k \(8\)"):
        grouped.search(query, k=8, any_class=True, global_candidates=2)
    with pytest.raises(InvalidArgumentError, match="luminance_weight must be at least 0"):
        grouped.search(query, k=2, luminance_weight=-0.5)


def test_search_batch_answers_each_query_as_search_does(grouped, grouped_root, degrade):
    queries = [grouped_root / DALMATIAN / "pug.jpg", degrade(DEMO / "n07749582_lemon.jpg")]
    batch = grouped.search_batch(queries, k=3)
    assert len(batch) == 2
    assert batch[0].query == str(queries[0]) and batch[1].query == "<JpegImageFile>"
    for query, response in zip(queries, batch):
        single = grouped.search(query, k=3)
        assert [r.id for r in response] == [r.id for r in single]
        np.testing.assert_allclose([r.score for r in response], [r.score for r in single], atol=1e-4)
    assert batch[0][0].path == str(queries[0])


def test_responses_serialise_to_json(grouped, grouped_root):
    response = grouped.search(grouped_root / DALMATIAN / "dalmatian.jpg", k=2)
    data = json.loads(json.dumps(response.to_dict()))
    assert data["query"] == str(grouped_root / DALMATIAN / "dalmatian.jpg")
    assert [r["rank"] for r in data["results"]] == [1, 2]
    assert set(data["results"][0]) == {"rank", "id", "path", "label", "label_name", "score", "semantic",
                                       "luminance", "global_similarity"}
    assert data["params"]["k"] == 2 and data["params"]["global_candidates"] == 200
    assert len(data["predicted"]) == 5 and data["forward_ms"] > 0


def test_records_by_id_and_by_path(grouped, grouped_root, monkeypatch):
    response = grouped.search(grouped_root / DALMATIAN / "dalmatian.jpg", k=1)
    record = grouped.record(response[0].id)
    assert record.path == response[0].path and record.label == DALMATIAN and record.label_source == "folder"
    with pytest.raises(KeyError, match="no image with id 9999"):
        grouped.record(9999)
    assert len(list(grouped.records())) == len(grouped) == 15
    assert grouped.record_of_path(record.path) == record
    monkeypatch.chdir(grouped_root)
    assert grouped.record_of_path(f"{DALMATIAN}/dalmatian.jpg") == record  # relative to the current folder
    with pytest.raises(KeyError, match="elsewhere.jpg is not in this index"):
        grouped.record_of_path("elsewhere.jpg")


# -- opening an index -----------------------------------------------------------------------------
def test_open_refuses_another_backbone_or_configuration(demo_index_path):
    with pytest.raises(ConfigMismatchError, match="built with backbone 'efficientnet-lite2', not 'vgg19'"):
        refsearch.Index.open(demo_index_path, backbone="vgg19")
    with pytest.raises(ConfigMismatchError, match=r"global_dim: 128 vs 64; cell_dim: 64 vs 32"):
        refsearch.Index.open(demo_index_path, config=IndexConfig(global_dim=64, cell_dim=32))
    # the same configuration and backbone are accepted, with other search defaults for the session
    same = refsearch.Index.open(demo_index_path, backbone="efficientnet-lite2", config=IndexConfig(),
                                search=SearchSettings(luminance_weight=0.5, global_candidates=50))
    assert len(same) == 37
    assert same.search(DEMO / "n02110341_dalmatian.jpg", k=2).params["luminance_weight"] == 0.5
    same.close()


def test_other_weights_are_refused_at_the_first_search(demo_index_path, changed_efficientnet_weights,
                                                       demo_photos):
    expected = (r"other efficientnet-lite2 weights \(fingerprint [0-9a-f]{16}, these are [0-9a-f]{16}\); "
                r"pass the same --weights")
    with refsearch.Index.open(demo_index_path, weights=changed_efficientnet_weights) as index:
        with pytest.raises(ConfigMismatchError, match=expected):
            index.search(demo_photos[0])


def _damaged_copy(index_path: Path, folder: Path, change) -> Path:
    copy = folder / f"copy{len(list(folder.glob('copy*')))}.index"
    shutil.copytree(index_path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    change(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_open_refuses_an_index_whose_manifest_disagrees_with_its_stores(tmp_path, demo_index_path):
    copy = _damaged_copy(demo_index_path, tmp_path, lambda m: m.update(images=40))
    expected = r"inconsistent \(the manifest lists 40 images, its class statistics 37\)"
    with pytest.raises(IndexStateError, match=expected):
        refsearch.Index.open(copy)


def test_open_refuses_missing_unfinished_and_damaged_indexes(tmp_path, demo_index_path):
    with pytest.raises(IndexStateError, match="no such index"):
        refsearch.Index.open(tmp_path / "nowhere.index")
    (tmp_path / "plain").mkdir()
    with pytest.raises(IndexStateError, match="is not a refsearch index"):
        refsearch.Index.open(tmp_path / "plain")

    def damaged(change) -> Path:
        return _damaged_copy(demo_index_path, tmp_path, change)

    with pytest.raises(IndexStateError, match="has index format 99.*--rebuild"):
        refsearch.Index.open(damaged(lambda m: m.update(format_version=99)))
    # an index from before segments and generations names the command that rebuilds it
    with pytest.raises(IndexStateError, match=r"has index format 1, .*`refsearch build-index \S+ -o \S+ --rebuild`"):
        refsearch.Index.open(damaged(lambda m: m.update(format_version=1)))
    with pytest.raises(ConfigMismatchError, match="unknown build setting fields"):
        refsearch.Index.open(damaged(lambda m: m["config"].update(colour_space="lab")))
    unreadable = damaged(lambda m: None)
    (unreadable / "manifest.json").write_text("{ not json")
    with pytest.raises(IndexStateError, match="is unreadable"):
        refsearch.Index.open(unreadable)


# -- the bundled demo -----------------------------------------------------------------------------
def test_the_demo_index_holds_every_demo_photo(demo_build, demo_index, demo_photos):
    _, summary = demo_build
    assert summary.images == summary.added == 37 and summary.skipped_total == 0
    assert sorted(r.path for r in demo_index.records()) == [str(p.resolve()) for p in demo_photos]
    for record in demo_index.records():
        assert record.label_source == "filename" and record.label == Path(record.path).name[:9]


def test_done_criterion_on_the_demo(demo_index, demo_photos, degrade):
    """At least 19 of 20 grayscale, cropped, downscaled, JPEG-recompressed copies of indexed photos find
    their original at rank 1 (default search: predicted class, widened as needed, k=10)."""
    chosen = [demo_photos[i] for i in np.linspace(0, len(demo_photos) - 1, 20).round().astype(int)]
    assert len(set(chosen)) == 20
    misses = []
    for photo in chosen:
        response = demo_index.search(degrade(photo))
        if response[0].path != str(photo.resolve()):
            misses.append(f"{photo.name} -> {Path(response[0].path).name}")
    assert len(misses) <= 1, misses


def test_demo_queries_find_references_of_their_kind(demo_index, demo_queries):
    cats = {"n02123045", "n02123159", "n02123394", "n02123597"}
    sled_dogs = {"n02110063", "n02110185", "n02111889"}
    fruit = {"n07745940", "n07747607", "n07749582", "n07753592"}
    queries = {q.name: q for q in demo_queries}
    assert demo_index.search(queries["gray_Egyptian_cat.jpg"], k=3)[0].label in cats
    assert demo_index.search(queries["gray_Eskimo_dog.jpg"], k=3)[0].label in sled_dogs
    apple = demo_index.search(queries["gray_Granny_Smith.jpg"], k=3)
    assert {r.label for r in apple} <= fruit  # no apple in the demo: the nearest fruit instead
    assert "Granny_Smith) holds 0 images" in apple.notes[0]


@pytest.mark.slow
def test_done_criterion_on_the_imagenet_sample(sample_dir, tmp_path_factory, degrade):
    """The same criterion on 20 photos of the full ImageNet sample. To keep the suite short they are
    searched among 200 of its 900 photos (one per class, more than 128 so the global PCA is fitted too);
    REFSEARCH_TEST_FULL_SAMPLE=1 indexes all of them (about a minute on two cores)."""
    photos = sorted(sample_dir.glob("*.JPEG"))
    count = len(photos) if os.environ.get("REFSEARCH_TEST_FULL_SAMPLE") == "1" else 200
    indexed = [photos[i] for i in np.linspace(0, len(photos) - 1, count).round().astype(int)]
    source = tmp_path_factory.mktemp("sample") / "photos"
    source.mkdir()
    for photo in indexed:
        os.symlink(photo, source / photo.name)
    output = source.parent / "sample.index"
    summary = refsearch.build_index(source, output, progress=False)
    assert summary.images == count
    misses = []
    with refsearch.Index.open(output) as index:
        assert index.manifest.dims["global"] == 128
        for photo in [indexed[i] for i in np.linspace(0, count - 1, 20).round().astype(int)]:
            response = index.search(degrade(photo))
            if response[0].path != str(photo.resolve()):
                misses.append(f"{photo.name} -> {Path(response[0].path).name}")
    assert len(misses) <= 1, misses


def test_a_query_while_the_first_build_runs_says_a_build_is_at_work(tmp_path, demo_photos):
    from refsearch.writer import IndexWriter

    with IndexWriter.open(tmp_path / "new.index", config=IndexConfig(), source=tmp_path, create=True,
                          command="build-index photos/"):
        with refsearch.Index.open(tmp_path / "new.index") as index:
            with pytest.raises(IndexStateError, match=r"holds no images yet: it is being built by pid \d+ .*"
                                                      r"\(build-index photos/\)") as refused:
                index.search(demo_photos[0], k=1)
    assert "when the build has published" in refused.value.hint
    with refsearch.Index.open(tmp_path / "new.index") as index:  # the build stopped: nothing is at work
        with pytest.raises(IndexStateError, match="holds no images; index some images first"):
            index.search(demo_photos[0], k=1)
