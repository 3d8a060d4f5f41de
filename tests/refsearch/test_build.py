"""build-index: labels and records, refusing mismatched rebuilds, resuming after a crash, incremental
updates, unreadable files, removing images."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from index_checks import as_format_2

import refsearch
from refsearch import images
from refsearch.backbones import default_workers
from refsearch.engines import decoding as engine_decoding
from refsearch.engines import local as local_engine
from refsearch.config import IndexConfig, SearchSettings
from refsearch.errors import ConfigMismatchError, IndexStateError
from refsearch.images import file_digest
from refsearch.integrity import record_of_file
from refsearch.manifest import Manifest
from refsearch.removal import remove_images
from refsearch.status import index_status

DEMO = Path(__file__).resolve().parents[2] / "index_builds" / "demo" / "photos"


def _build(source, output, config=None, **options):
    return refsearch.build_index(source, output, config, progress=False, **options)


def _paths(index_path) -> dict[str, refsearch.ImageRecord]:
    with refsearch.Index.open(index_path) as index:
        return {record.path: record for record in index.records()}


def _touch_later(path: Path, seconds: int = 10) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 1_000_000_000))


@pytest.fixture
def spy_decodes(monkeypatch):
    """The paths the build decodes, in order."""
    seen: list[str] = []
    real = engine_decoding.load_prepared

    def spy(path, *args, **kwargs):
        seen.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(engine_decoding, "load_prepared", spy)
    return seen


# -- a small labelled tree, built once for the read-only checks ----------------------------------
LAYOUT = {  # path in the tree -> demo photo
    "n02123045/cat-a.jpg": "n02123045_tabby.jpg",  # labelled by folder
    "n02123045/cat-b.jpg": "n02123394_Persian_cat.jpg",  # labelled by folder, though another breed
    "n01440764_tench.jpg": "n01440764_tench.jpg",  # labelled by file name
    "holiday/n04146614_bus.jpg": "n04146614_school_bus.jpg",  # by file name inside a plain folder
    "holiday/banana.jpg": "n07753592_banana.jpg",  # unlabelled: predicted
    "holiday/n99999999_daisy.jpg": "n11939491_daisy.jpg",  # not a real wnid: predicted
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree") / "photos"
    for target, photo in LAYOUT.items():
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(DEMO / photo, root / target)
    return root


@pytest.fixture(scope="module")
def tree_build(tree, tmp_path_factory):
    output = tmp_path_factory.mktemp("tree-index") / "tree.index"
    return output, _build(tree, output)


def test_summary_manifest_and_files_of_a_fresh_build(tree_build, efficientnet_state):
    output, summary = tree_build
    assert (summary.images, summary.added, summary.removed, summary.unchanged) == (6, 6, 0, 0)
    assert (summary.skipped, summary.skipped_total, summary.report) == (0, 0, None)
    assert summary.index == str(output) and summary.search_kind == "exact"
    manifest = Manifest.load(output)
    assert manifest.images == 6 and manifest.generation == 1 and len(manifest.segments) == 1
    # the default weights (gray-adapted) at the backbone's native input size, whole frames
    assert manifest.config.weights == refsearch.create_backbone("efficientnet-lite2").fingerprint
    assert manifest.config.weights != refsearch.backbones.state_fingerprint(efficientnet_state)
    assert (manifest.config.input_size, manifest.config.crop) == (260, "full")
    # six images cannot fit 128 global PCA components: the global descriptor is kept whole
    assert manifest.dims == {"global": 1280, "cell": 64, "fitted_on": 6}
    assert manifest.classes == 5  # the two cats share a folder label
    assert {"refsearch", "torch", "faiss"} <= set(manifest.versions)
    assert (output / "metadata.lmdb").is_dir() and (output / "projections.npz").is_file()
    assert (output / manifest.files["class_stats"].name).is_file() and "tombstones" not in manifest.files
    segment = output / "segments" / manifest.segments[0].name
    assert sorted(p.name for p in segment.iterdir()) == ["cells.f16", "global.faiss", "hist.u16"]
    # every file the generation uses is recorded with its size and checksum
    recorded = manifest.file_records()
    assert set(recorded) == {"projections.npz", manifest.files["class_stats"].name,
                             *(f"segments/{segment.name}/{name}" for name in ("cells.f16", "global.faiss", "hist.u16"))}
    assert all(record == record_of_file(output / name) for name, record in recorded.items())
    assert not (output / "pca-sample").exists()
    assert not (output / "skipped.tsv").exists()


def test_labels_come_from_folders_then_file_names_then_predictions(tree, tree_build):
    records = {Path(path).relative_to(tree.resolve()).as_posix(): record
               for path, record in _paths(tree_build[0]).items()}
    assert set(records) == set(LAYOUT)
    assert records["n02123045/cat-a.jpg"].label == "n02123045"
    assert records["n02123045/cat-b.jpg"].label == "n02123045"
    assert records["n02123045/cat-b.jpg"].label_source == "folder"
    assert records["n01440764_tench.jpg"].label_source == "filename"
    assert records["holiday/n04146614_bus.jpg"].label == "n04146614"
    assert records["holiday/n04146614_bus.jpg"].label_source == "filename"
    for name in ("holiday/banana.jpg", "holiday/n99999999_daisy.jpg"):
        assert records[name].label_source == "predicted" and records[name].label == records[name].prediction
    assert records["holiday/banana.jpg"].label == "n07753592"  # the network knows a banana
    for name, record in records.items():
        photo = DEMO / LAYOUT[name]
        assert (record.width, record.height) == Image.open(photo).size
        assert record.digest == file_digest(photo.read_bytes())
        assert record.file_size == photo.stat().st_size
        assert 0 < record.confidence <= 1


def test_a_different_configuration_or_source_is_refused_and_leaves_the_index_intact(
        tree, tree_build, tmp_path, changed_efficientnet_weights):
    output, _ = tree_build
    with pytest.raises(ConfigMismatchError, match=r"global_dim: 128 vs 64.*--rebuild"):
        _build(tree, output, IndexConfig(global_dim=64))
    with pytest.raises(ConfigMismatchError, match=r"weights: '[0-9a-f]{16}' vs '[0-9a-f]{16}'"):
        _build(tree, output, weights=changed_efficientnet_weights)
    other = tmp_path / "other"
    shutil.copytree(tree, other)
    with pytest.raises(ConfigMismatchError, match=r"indexes .*photos, not .*other; pass --rebuild"):
        _build(other, output)
    manifest = Manifest.load(output)
    assert manifest.images == 6 and manifest.generation == 1


def test_rebuild_replaces_an_index_built_another_way(tree, tree_build, tmp_path):
    output = tmp_path / "copy.index"
    shutil.copytree(tree_build[0], output)
    summary = _build(tree, output, IndexConfig(global_dim=4, cell_dim=8), rebuild=True)
    assert summary.added == 6
    manifest = Manifest.load(output)
    assert manifest.config.global_dim == 4 and manifest.dims["global"] == 4 and manifest.generation == 1


def test_an_output_that_is_not_an_index_is_never_overwritten(tree, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("precious")
    for output in (busy, busy / "thesis.tex"):
        with pytest.raises(IndexStateError, match="is not a refsearch index; choose another output"):
            _build(tree, output, rebuild=True)
    assert (busy / "thesis.tex").read_text() == "precious"


def test_bad_batch_size_workers_or_streams_are_refused_before_anything_is_written(tree, tmp_path):
    for options in ({"batch_size": -1}, {"workers": -1}, {"streams": 0}):
        with pytest.raises(ValueError, match="batch size and streams must be at least 1"):
            _build(tree, tmp_path / "x.index", **options)
    assert not (tmp_path / "x.index").exists()


def test_a_zero_batch_size_is_refused(tree, tmp_path):
    with pytest.raises(ValueError, match="batch size and streams must be at least 1"):
        _build(tree, tmp_path / "x.index", batch_size=0)


def test_parallel_forward_streams_store_what_one_stream_stores_and_restore_torch_threads(
        tree, tree_build, tmp_path):
    threads = torch.get_num_threads()
    _build(tree, tmp_path / "streams.index", batch_size=1, streams=3)
    assert torch.get_num_threads() == threads
    with (refsearch.Index.open(tree_build[0]) as one, refsearch.Index.open(tmp_path / "streams.index") as three):
        assert [(r.id, r.path, r.prediction) for r in one.records()] == \
               [(r.id, r.path, r.prediction) for r in three.records()]
        ids_one, vectors_one = one.global_vectors()
        ids_three, vectors_three = three.global_vectors()
        np.testing.assert_array_equal(ids_one, ids_three)
        np.testing.assert_allclose(vectors_three, vectors_one, atol=1e-4)


# -- resume after a crash -------------------------------------------------------------------------
class _Crash:
    """Stands in for the local engine's extract; raises KeyboardInterrupt on its `crash_on`-th call."""

    def __init__(self, crash_on: int):
        self.crash_on, self.calls, self.real = crash_on, 0, local_engine.extract

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.crash_on:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


def test_a_build_that_changes_nothing_publishes_nothing_and_only_a_real_interruption_is_resumed(
        tmp_path, copy_photos, tiny_build, monkeypatch):
    copy_photos(tmp_path / "photos", 3)
    first = tiny_build(tmp_path / "photos", tmp_path / "x.index")
    again = tiny_build(tmp_path / "photos", tmp_path / "x.index")
    assert (first.generation, first.resumed, first.up_to_date) == (1, False, False)
    assert (again.generation, again.resumed, again.up_to_date, again.unchanged) == (1, False, True, 3)
    assert Manifest.load(tmp_path / "x.index").generation == 1
    copy_photos(tmp_path / "photos", 7)  # two more batches, the first committed before the crash
    monkeypatch.setattr(local_engine, "extract", _Crash(crash_on=2))
    with pytest.raises(KeyboardInterrupt):
        tiny_build(tmp_path / "photos", tmp_path / "x.index")
    monkeypatch.undo()
    finished = tiny_build(tmp_path / "photos", tmp_path / "x.index")
    assert (finished.generation, finished.resumed, finished.up_to_date, finished.images) == (2, True, False, 7)


def test_an_interrupted_build_leaves_the_last_generation_and_resuming_equals_a_clean_build(
        tmp_path, copy_photos, monkeypatch, spy_decodes):
    photos = copy_photos(tmp_path / "photos", 10)
    # PCA fitted on 4 images (sampled from the whole list); then batches of 4: the fit sample,
    # photos 1, 2, 4, 5, then photos 7, 8 (the third forward pass, where the crash happens).
    config = IndexConfig(pca_images=4, global_dim=3, cell_dim=8)
    crash = _Crash(crash_on=3)
    monkeypatch.setattr(local_engine, "extract", crash)
    with pytest.raises(KeyboardInterrupt):
        _build(tmp_path / "photos", tmp_path / "crashed.index", config, batch_size=4)
    monkeypatch.setattr(local_engine, "extract", crash.real)
    # readers see the generation published before the build (a new index: empty)
    with refsearch.Index.open(tmp_path / "crashed.index") as before:
        assert len(before) == 0 and before.generation == 0
    status = index_status(tmp_path / "crashed.index")
    assert status.pending and status.writer is None
    with pytest.raises(IndexStateError, match="interrupted build; run the same `refsearch build-index`"):
        remove_images(tmp_path / "crashed.index", [0])

    spy_decodes.clear()
    resumed = _build(tmp_path / "photos", tmp_path / "crashed.index", config, batch_size=4)
    # only the two photos of the lost batch are processed again
    assert sorted(spy_decodes) == sorted(str(photos[i].resolve()) for i in (7, 8))
    assert (resumed.added, resumed.unchanged, resumed.images) == (2, 8, 10)
    clean = _build(tmp_path / "photos", tmp_path / "clean.index", config, batch_size=4)
    assert clean.images == resumed.images == 10

    with (refsearch.Index.open(tmp_path / "crashed.index") as a,
          refsearch.Index.open(tmp_path / "clean.index") as b):
        assert a.manifest.dims == b.manifest.dims == {"global": 3, "cell": 8, "fitted_on": 4}
        assert {(r.id, r.path) for r in a.records()} == {(r.id, r.path) for r in b.records()}
        for query in (photos[0], photos[5], photos[8]):
            got, want = a.search(query, k=5, any_class=True), b.search(query, k=5, any_class=True)
            assert [r.path for r in got] == [r.path for r in want]
            np.testing.assert_allclose([r.score for r in got], [r.score for r in want], atol=1e-5)
            assert got[0].path == str(query.resolve())


def test_a_crash_while_fitting_the_pca_restarts_cleanly(tmp_path, copy_photos, monkeypatch):
    copy_photos(tmp_path / "photos", 3)
    monkeypatch.setattr(local_engine, "extract", _Crash(crash_on=1))
    with pytest.raises(KeyboardInterrupt):
        _build(tmp_path / "photos", tmp_path / "x.index")
    monkeypatch.undo()
    assert not (tmp_path / "x.index" / "projections.npz").exists()
    summary = _build(tmp_path / "photos", tmp_path / "x.index")
    assert (summary.added, summary.images) == (3, 3)


# -- incremental updates --------------------------------------------------------------------------
def test_only_added_removed_and_changed_files_are_processed(tmp_path, copy_photos, demo_photos, spy_decodes):
    photos = copy_photos(tmp_path / "photos", 5)
    output = tmp_path / "inc.index"
    _build(tmp_path / "photos", output)
    before = _paths(output)

    (tmp_path / "photos" / "new").mkdir()
    added = Path(shutil.copy2(demo_photos[20], tmp_path / "photos" / "new" / demo_photos[20].name))
    photos[1].unlink()
    changed = photos[3]
    changed.write_bytes(demo_photos[30].read_bytes())
    _touch_later(changed)
    spy_decodes.clear()
    summary = _build(tmp_path / "photos", output)

    assert sorted(spy_decodes) == sorted([str(added.resolve()), str(changed.resolve())])
    assert (summary.added, summary.removed, summary.unchanged, summary.images) == (2, 2, 3, 5)
    after = _paths(output)
    assert str(photos[1].resolve()) not in after
    new_record = after[str(changed.resolve())]
    assert new_record.digest == file_digest(demo_photos[30].read_bytes())
    assert new_record.id > max(r.id for r in before.values())  # ids are never reused
    for photo in (photos[0], photos[2], photos[4]):
        assert after[str(photo.resolve())] == before[str(photo.resolve())]
    with refsearch.Index.open(output) as index:
        assert index.search(demo_photos[30], k=1, any_class=True)[0].path == str(changed.resolve())
        assert index.search(demo_photos[1], k=5, any_class=True)[0].path != str(photos[1].resolve())

    spy_decodes.clear()
    again = _build(tmp_path / "photos", output)
    assert spy_decodes == []
    assert (again.added, again.removed, again.unchanged, again.images) == (0, 0, 5, 5)


def test_a_touched_file_is_processed_again(tmp_path, copy_photos, spy_decodes):
    photos = copy_photos(tmp_path / "photos", 2)
    _build(tmp_path / "photos", tmp_path / "t.index")
    _touch_later(photos[0])
    spy_decodes.clear()
    summary = _build(tmp_path / "photos", tmp_path / "t.index")
    assert spy_decodes == [str(photos[0].resolve())]
    assert (summary.added, summary.removed, summary.unchanged, summary.images) == (1, 1, 1, 2)


def test_an_empty_folder_builds_an_empty_index(tmp_path):
    (tmp_path / "empty").mkdir()
    summary = _build(tmp_path / "empty", tmp_path / "e.index")
    assert summary.images == 0
    with refsearch.Index.open(tmp_path / "e.index") as index:
        assert len(index) == 0
        with pytest.raises(IndexStateError, match="holds no images"):
            index.search(Image.new("L", (32, 32)))


def test_large_collections_switch_the_all_class_search_to_ivf(tmp_path, copy_photos, demo_photos):
    copy_photos(tmp_path / "photos", 18)
    summary = _build(tmp_path / "photos", tmp_path / "ivf.index", search=SearchSettings(exact_all_class_limit=17))
    assert summary.search_kind == "ivf"
    with refsearch.Index.open(tmp_path / "ivf.index") as index:
        assert index.manifest.search_kind() == "ivf"
        for photo in demo_photos[:18:6]:
            response = index.search(photo, k=3, any_class=True, exclude_self=True)
            assert len(response) == 3
            assert str(tmp_path / "photos" / photo.name) not in [r.path for r in response]
            # the same photo, not as a file (so not recognised as itself), is still its own best match
            assert index.search(Image.open(photo), k=1, any_class=True)[0].path.endswith(photo.name)


# -- unreadable files -----------------------------------------------------------------------------
@pytest.fixture
def unknown_mode(monkeypatch):
    """Makes Pillow report a mode refsearch does not know for any 13x7 image, standing in for a format
    whose mode no branch of the decoder handles (every mode Pillow 13 makes is handled)."""
    real = images.ImageOps.exif_transpose

    def transpose(image, *args, **kwargs):
        out = real(image, *args, **kwargs)
        out = image if out is None else out
        if out.size == (13, 7):
            out._mode = "XYZ;32"
        return out

    monkeypatch.setattr(images.ImageOps, "exif_transpose", transpose)


def test_unreadable_files_are_skipped_reported_and_remembered(tmp_path, copy_photos, demo_photos, write_image,
                                                             unknown_mode, spy_decodes):
    source = tmp_path / "photos"
    copy_photos(source, 3)
    data = demo_photos[5].read_bytes()
    bad = {
        "truncated.jpg": "truncated or corrupt image data",
        "empty.jpg": "empty file",
        "notes.jpg": "not an image file (unrecognised format)",
        "odd-mode.png": "unsupported image mode 'XYZ;32'",
    }
    (source / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (source / "empty.jpg").write_bytes(b"")
    (source / "notes.jpg").write_text("shopping list: milk, eggs\n")
    write_image("odd-mode.png", size=(13, 7), folder=source)
    # unusual but usable: kept
    write_image("tiny.png", size=(1, 1), folder=source)
    write_image("cmyk.jpg", mode="CMYK", folder=source)
    write_image("rgba.png", mode="RGBA", folder=source)
    write_image("deep.png", mode="I;16", folder=source)

    summary = _build(source, tmp_path / "x.index")
    assert (summary.images, summary.added, summary.skipped, summary.skipped_total) == (7, 7, 4, 4)
    assert summary.report == str(tmp_path / "x.index" / "skipped.tsv")
    lines = Path(summary.report).read_text().splitlines()
    assert lines[0] == "path\treason"
    rows = dict(line.split("\t") for line in lines[1:])
    assert sorted(rows) == sorted(str((source / name).resolve()) for name in bad)
    for name, reason in bad.items():
        assert rows[str((source / name).resolve())].startswith(reason)
    assert Manifest.load(tmp_path / "x.index").skipped == 4

    # known-bad files are not tried again while unchanged
    spy_decodes.clear()
    again = _build(source, tmp_path / "x.index")
    assert spy_decodes == []
    assert (again.skipped, again.skipped_total, again.images) == (0, 4, 7)

    # a repaired file is indexed and leaves the report; a deleted one is forgotten
    (source / "empty.jpg").write_bytes(demo_photos[6].read_bytes())
    (source / "notes.jpg").unlink()
    fixed = _build(source, tmp_path / "x.index")
    assert (fixed.added, fixed.skipped, fixed.skipped_total, fixed.images) == (1, 0, 2, 8)
    names = {Path(line.split("\t")[0]).name for line in Path(fixed.report).read_text().splitlines()[1:]}
    assert names == {"truncated.jpg", "odd-mode.png"}


def test_a_fit_sample_that_is_all_unreadable_stops_the_build_until_run_again(tmp_path, copy_photos):
    source = tmp_path / "photos"
    copy_photos(source, 1)  # n01440764_tench.jpg, between the two broken files below
    (source / "a-broken.jpg").write_bytes(b"")
    (source / "z-broken.jpg").write_text("nothing")
    config = IndexConfig(pca_images=2)  # samples the first and the last file
    with pytest.raises(IndexStateError, match="none of the sampled images could be read"):
        _build(source, tmp_path / "x.index", config)
    summary = _build(source, tmp_path / "x.index", config)  # the broken files are now known
    assert (summary.images, summary.skipped_total) == (1, 2)


# -- removing images ------------------------------------------------------------------------------
def test_removed_images_stay_out_until_their_file_changes(tmp_path, copy_photos):
    photos = copy_photos(tmp_path / "photos", 4)
    output = tmp_path / "r.index"
    _build(tmp_path / "photos", output)
    victim = _paths(output)[str(photos[2].resolve())]
    assert remove_images(output, [victim.id]) == 1
    with refsearch.Index.open(output) as index:
        assert len(index) == 3
        with pytest.raises(KeyError):
            index.record(victim.id)
        assert all(r.path != victim.path for r in index.search(photos[2], k=3, any_class=True))
    assert f"{victim.path}\tremoved from the index" in (output / "skipped.tsv").read_text()

    assert _build(tmp_path / "photos", output).images == 3  # not added back
    _touch_later(photos[2])
    summary = _build(tmp_path / "photos", output)
    assert (summary.added, summary.images) == (1, 4)


def test_removing_an_unknown_id_changes_nothing(tmp_path, copy_photos):
    copy_photos(tmp_path / "photos", 2)
    output = tmp_path / "r.index"
    _build(tmp_path / "photos", output)
    with pytest.raises(KeyError, match="no image with id 99"):
        remove_images(output, [0, 99])
    with refsearch.Index.open(output) as index:
        assert len(index) == 2


def test_a_gpu_build_decodes_on_every_usable_core_and_a_cpu_build_on_two():
    assert default_workers("cpu") == 2
    assert default_workers("cuda") == len(os.sched_getaffinity(0))


# -- what the network sees: input size and crop -------------------------------------------------
def test_a_centre_crop_build_stores_what_a_full_frame_build_of_the_centre_square_stores(tmp_path, tiny_build,
                                                                                      tiny_config, demo_photos):
    wide, square = tmp_path / "wide", tmp_path / "square"
    wide.mkdir()
    square.mkdir()
    for number, photo in enumerate(demo_photos[:4]):
        image = Image.open(photo).convert("RGB").resize((240, 120))  # a wide frame, its centre 120 x 120
        image.save(wide / f"p{number}.png")
        image.crop((60, 0, 180, 120)).save(square / f"p{number}.png")
    refsearch.build_index(wide, tmp_path / "center.index", tiny_config.with_(crop="center"), progress=False,
                          workers=0)
    tiny_build(square, tmp_path / "square.index")
    tiny_build(wide, tmp_path / "full.index")
    with refsearch.Index.open(tmp_path / "center.index") as center, \
            refsearch.Index.open(tmp_path / "square.index") as cropped, refsearch.Index.open(tmp_path / "full.index") as full:
        assert center.config.crop == "center" and full.config.crop == "full"
        ids = [r.id for r in center.records()]
        np.testing.assert_allclose(center.local_features(ids)[1], cropped.local_features(ids)[1], atol=1e-3)
        assert not np.allclose(center.local_features(ids)[1], full.local_features(ids)[1], atol=1e-3)
        query = wide / "p2.png"
        assert center.search(query, k=1, any_class=True)[0].path == str(query.resolve())


def test_input_size_and_crop_are_build_settings(tmp_path, tiny_build, tiny_config, copy_photos):
    photos = tmp_path / "photos"
    copy_photos(photos, 3)
    summary = tiny_build(photos, tmp_path / "tiny.index")
    manifest = Manifest.load(Path(summary.index))
    assert (manifest.config.input_size, manifest.config.crop) == (56, "full")  # the tiny network's own size
    with pytest.raises(ConfigMismatchError, match="crop: 'full' vs 'center'"):
        refsearch.build_index(photos, summary.index, tiny_config.with_(crop="center"), progress=False)
    with pytest.raises(refsearch.BackboneError, match="takes 56-pixel inputs only, not 96"):
        refsearch.build_index(photos, tmp_path / "other.index", tiny_config.with_(input_size=96), progress=False)
    for bad, message in (({"input_size": 16}, "input_size must be 0"), ({"crop": "middle"}, "crop must be one of")):
        with pytest.raises(ValueError, match=message):
            IndexConfig(**bad)


def test_an_index_saved_before_input_size_crop_and_removed_files_existed_reads_as_built_then(tmp_path, tiny_build,
                                                                                          copy_photos):
    import json

    copy_photos(tmp_path / "photos", 2)
    summary = tiny_build(tmp_path / "photos", tmp_path / "tiny.index")
    manifest_file = Path(summary.index) / "manifest.json"
    data = as_format_2(json.loads(manifest_file.read_text()))
    del data["config"]["input_size"], data["config"]["crop"], data["removed_files"]
    manifest_file.write_text(json.dumps(data))
    manifest = Manifest.load(Path(summary.index))
    assert (manifest.config.input_size, manifest.config.crop, manifest.removed_files) == (224, "full", 0)
    assert manifest.format_version == 3 and manifest.files["projections"].name == "projections.npz"


def test_an_index_built_with_other_named_weights_finds_them_again(tmp_path, demo_photos):
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in demo_photos[:3]:
        shutil.copy2(photo, folder / photo.name)
    refsearch.build_index(folder, tmp_path / "imagenet.index", IndexConfig(input_size=224), weights="imagenet",
                          progress=False)
    with refsearch.Index.open(tmp_path / "imagenet.index") as index:  # no --weights: the default is gray
        assert index.network.network.fingerprint == refsearch.create_backbone(
            "efficientnet-lite2", weights="imagenet").fingerprint
        assert index.search(folder / demo_photos[1].name, k=1)[0].path == str((folder / demo_photos[1].name).resolve())
    with refsearch.Index.open(tmp_path / "imagenet.index", weights="gray") as index:
        with pytest.raises(ConfigMismatchError, match="other efficientnet-lite2 weights"):
            index.network.load()
