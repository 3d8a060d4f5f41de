from pathlib import Path

import numpy as np
import pytest
import torch

from colorize.prior import ChromaPrior, bin_centres, bin_of
from colorize.training import (TrainingSettings, cell_targets, collect_examples, main, open_example_store,
                               photo_examples, train_prior)

SMALL = TrainingSettings(networks=1, steps=150, width=32, crop=6, batch=8, short_side=64, scales=(1.0,))


def test_cell_targets_histogram_and_mean_per_cell():
    ab = np.zeros((16, 24, 2), np.float32)
    ab[:, :12] = (40.0, -20.0)
    ab[:, 12:] = (-30.0, 10.0)
    ab[8:, 4:12] = (0.0, 0.0)           # half of the cell at row 1, column 0
    histogram, mean = cell_targets(ab, (2, 3), stride=8)
    assert histogram.shape == (len(bin_centres()), 2, 3) and mean.shape == (2, 2, 3)
    assert np.allclose(histogram.sum(axis=0), 1.0)
    assert histogram[bin_of(np.array([40.0, -20.0])), 0, 0] == 1.0
    assert histogram[bin_of(np.array([-30.0, 10.0])), 0, 2] == 1.0
    assert histogram[bin_of(np.array([0.0, 0.0])), 1, 0] == 0.5
    assert np.allclose(mean[:, 1, 0], (20.0, -10.0)) and np.allclose(mean[:, 0, 2], (-30.0, 10.0))


def test_examples_are_the_photo_and_its_mirror_image(make_scene, backbone):
    photo = make_scene((96, 64), seed=1)
    examples = photo_examples(backbone, photo, [make_scene((80, 80), seed=2)], SMALL)
    assert len(examples) == 2
    straight, mirrored = examples
    assert torch.allclose(straight.cell_ab, mirrored.cell_ab.flip(-1), atol=1e-4)
    assert straight.inputs.levels.shape[1:] == straight.cell_ab.shape[1:] == (8, 12)
    assert straight.energy == pytest.approx(mirrored.energy) and straight.energy > 100
    halved = photo_examples(backbone, photo, [make_scene((80, 80), seed=2)], SMALL, short_side=32)
    assert halved[0].cell_ab.shape[1:] == halved[0].inputs.exemplar.shape[1:] == (4, 6)


def test_training_learns_colours_that_follow_from_the_content(make_scene, backbone):
    photos = [make_scene((96, 64), seed=seed, shift=shift)
              for seed, shift in [(1, 0), (2, 6), (3, -6), (4, 3)]]
    examples = []
    for number, photo in enumerate(photos):
        examples += photo_examples(backbone, photo, [photos[(number + 1) % len(photos)]], SMALL)
    prior = train_prior(examples, backbone, SMALL, progress=False, metadata={"photos": len(photos)})
    assert prior.fits(backbone.name, backbone.fingerprint) and prior.metadata["photos"] == 4
    held_out = photo_examples(backbone, make_scene((96, 64), seed=9, shift=2), [photos[0]], SMALL)[0]
    predicted = torch.from_numpy(prior.predict(held_out.inputs).ab).permute(2, 0, 1)
    error = (predicted - held_out.cell_ab).norm(dim=0).mean()
    gray_error = held_out.cell_ab.norm(dim=0).mean()
    assert error < 0.5 * gray_error


def test_collect_examples_leaves_a_photo_out_of_its_own_references(small_index, monkeypatch, tmp_path,
                                                                   make_example):
    import colorize.training as training
    import refsearch

    seen = []

    sides = []

    def record(backbone, photo, references, settings, short_side):
        seen.append((photo.size, [np.asarray(r) for r in references]))
        sides.append(short_side)
        return [make_example(len(seen))]

    monkeypatch.setattr(training, "photo_examples", record)
    settings = TrainingSettings(self_reference_every=2, scales=(1.0,))
    with refsearch.Index.open(small_index) as index:
        indexed = [r.path for r in index.records()][:2]
        store = open_example_store(index, tmp_path / "examples", settings)
        assert collect_examples(index, indexed, store, settings, progress=False, workers=1) == []
    assert len(store) == 3 and store.photos == 2  # two photos, the first also with a crop of itself
    for (size, references), path in zip([seen[0], seen[2]], indexed):
        own = np.asarray(training.decode(path, min_short_side=2 * settings.short_side).image)
        assert len(references) == 3
        assert not any(r.shape == own.shape and np.array_equal(r, own) for r in references)
    (width, height), with_itself = seen[1]
    assert np.allclose(with_itself[0].shape[:2], (height * 0.9, width * 0.9), atol=1)
    assert all(np.array_equal(a, b) for a, b in zip(with_itself[1:], seen[0][1][:2]))
    assert sides == [256] * 3
    sides.clear()
    with refsearch.Index.open(small_index) as index:
        scaled = TrainingSettings(self_reference_every=0, scales=(0.5, 1.0))
        store = open_example_store(index, tmp_path / "scaled", scaled)
        collect_examples(index, indexed[:1], store, scaled, progress=False, workers=2)
        assert len(store) == 2
    assert sides == [128, 256]


def test_collecting_again_goes_on_where_it_stopped_and_reports_unreadable_photos(small_index, monkeypatch,
                                                                                 tmp_path, make_example):
    import colorize.training as training
    import refsearch

    prepared = []

    def record(backbone, photo, references, settings, short_side):
        prepared.append(photo.size)
        return [make_example(len(prepared))]

    monkeypatch.setattr(training, "photo_examples", record)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    settings = TrainingSettings(self_reference_every=0, scales=(1.0,))
    with refsearch.Index.open(small_index) as index:
        photos = [r.path for r in index.records()][:3]
        store = open_example_store(index, tmp_path / "examples", settings)
        collect_examples(index, photos[:2], store, settings, progress=False, workers=1)
        assert len(prepared) == 2
        again = open_example_store(index, tmp_path / "examples", settings)
        unreadable = collect_examples(index, [*photos, broken], again, settings, progress=False, workers=1)
        with pytest.raises(ValueError, match="prepared otherwise"):
            open_example_store(index, tmp_path / "examples", TrainingSettings(scales=(0.5,)))
    assert len(prepared) == 3 and again.photos == 3
    assert len(unreadable) == 1 and "broken.jpg" in unreadable[0]


def test_training_from_a_store_on_disk_equals_training_from_memory(tmp_path, make_scene, backbone):
    from colorize.example_store import ExampleStore

    examples = []
    for seed in (1, 2):
        examples += photo_examples(backbone, make_scene((96, 64), seed=seed), [make_scene((80, 80), seed=3)],
                                   SMALL)
    store = ExampleStore(tmp_path, {"test": 1})
    store.add("a", examples[:2])
    store.add("b", examples[2:])
    settings = TrainingSettings(networks=1, steps=20, width=8, crop=4, batch=4, short_side=64)
    from_memory = train_prior(examples, backbone, settings, progress=False)
    from_disk = train_prior(ExampleStore(tmp_path, {"test": 1}, memory_budget=0), backbone, settings,
                            progress=False)
    assert np.array_equal(from_memory.used_bins, from_disk.used_bins)
    memory_weights, disk_weights = (p.networks[0].state_dict().values() for p in (from_memory, from_disk))
    assert all(torch.equal(a, b) for a, b in zip(memory_weights, disk_weights))


def test_the_training_command_saves_a_prior_and_keeps_or_removes_its_examples(small_index, tmp_path, capsys):
    import refsearch

    with refsearch.Index.open(small_index) as index:
        photos = tmp_path / "photos"
        photos.mkdir()
        for record in list(index.records())[:2]:
            (photos / Path(record.path).name).write_bytes(Path(record.path).read_bytes())
    quick = ["--networks", "1", "--steps", "3", "--width", "8", "--scales", "0.25"]
    main([str(photos), "--index", str(small_index), "-o", str(tmp_path / "prior.pt"), *quick])
    assert len(ChromaPrior.load(tmp_path / "prior.pt").networks) == 1
    assert not (tmp_path / "prior.examples").exists()
    main([str(photos), "--index", str(small_index), "-o", str(tmp_path / "again.pt"), "--keep-examples",
          "--examples", str(tmp_path / "kept"), *quick])
    assert len(list((tmp_path / "kept").glob("*.npz"))) == 2
    capsys.readouterr()
    main([str(photos), "--index", str(small_index), "-o", str(tmp_path / "third.pt"), "--memory", "0",
          "--examples", str(tmp_path / "kept"), *quick])
    assert "going on from 2 photos prepared before" in capsys.readouterr().out
    assert not (tmp_path / "kept").exists()


def test_a_saved_prior_trains_once_and_loads_in_another_process_shape(tmp_path, make_scene, backbone):
    examples = photo_examples(backbone, make_scene((64, 64), seed=5), [make_scene((64, 64), seed=6)], SMALL)
    prior = train_prior(examples, backbone, TrainingSettings(networks=2, steps=3, width=8, crop=4, batch=2,
                                                             short_side=64), progress=False)
    prior.save(tmp_path / "p.pt")
    assert len(ChromaPrior.load(tmp_path / "p.pt").networks) == 2
    with pytest.raises(ValueError, match="no training examples"):
        train_prior([], backbone, SMALL, progress=False)


def test_the_training_command_reports_bad_input_in_an_error_line(small_index, tmp_path, capsys):
    import torch

    cases = [(tmp_path / "missing", small_index, [], "no such folder"),
             (tmp_path, tmp_path / "no.index", [], "no such index"),
             (tmp_path, small_index, [], "no colour photos to learn from"),
             (tmp_path, small_index, ["--device", "tpu"], "unknown device")]
    if not torch.cuda.is_available():
        cases.append((tmp_path, small_index, ["--device", "cuda"], "sees no CUDA GPU"))
    for photos, index, options, expected in cases:
        with pytest.raises(SystemExit) as exit_:
            main([str(photos), "--index", str(index), "-o", str(tmp_path / "prior.pt"), *options])
        assert exit_.value.code == 2
        lines = capsys.readouterr().err.splitlines()  # the error comes after the progress bar, if any
        if lines[-1].startswith("hint: "):
            lines.pop()
        assert lines[-1].startswith("error: ") and expected in lines[-1]
    assert not (tmp_path / "prior.examples").exists() and not (tmp_path / "prior.pt").exists()
