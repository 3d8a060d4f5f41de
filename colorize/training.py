"""Training a chroma prior (colorize.prior) from colour photos and an index that gives each its references.

    python -m colorize.training PHOTOS_DIR --index INDEX -o prior.pt [--skip-every 9 --skip-offsets 0,4]

Examples are prepared into a folder (--examples, by default beside the output), one file per photo, so a
large collection needs the memory of a few photos only and an interrupted run, started again with the same
command, goes on where it stopped; the folder is removed once the prior is saved (--keep-examples keeps it).

Each photo is seen as exemplar sees a gray target: its luminance at working resolution, its top references
from the index (its own file left out) warped onto it; the targets are the photo's own colours per cell.
Photos and their mirror images are both used. Every few photos also
appear with a crop of themselves as their first reference, so the network learns to copy a reference that
truly matches (a colour original of the target). An ensemble of networks, each from its own seed, is trained
on random crops of cells with two losses: cross-entropy against each cell's colour histogram, and the
squared error of the expected chroma, divided per photo by the photo's chroma energy (plus a floor) so that
photos weigh as PSNR, a logarithm of the error, weighs them.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from refsearch.backbones import forward_streams
from refsearch.network_protocol import Network
from refsearch.errors import USER_FILE_ERRORS, InvalidArgumentError, RefsearchError
from refsearch.images import ImageError, decode, find_images, is_grayscale

from .base import Reference
from .chroma import DEFAULT_WORKING_SHORT_SIDE, WorkingImage
from .correspondence import MatchSettings, dense_features, warp_reference
from .example_store import DEFAULT_MEMORY_BUDGET, Example, ExampleStore, bins_seen_by, photo_key
from .prior import (REFERENCES_SEEN, ChromaPrior, Normalisation, PriorInputs, PriorNetwork, bin_centres,
                    bin_of, spread_over_bins)
from .resample import resize


@dataclass(frozen=True)
class TrainingSettings:
    networks: int = 5
    steps: int = 2000
    width: int = 64
    crop: int = 14                 # cells a side
    batch: int = 24                # crops a step
    learning_rate: float = 2e-3    # peak of a one-cycle schedule
    weight_decay: float = 1e-5
    dropout: float = 0.1           # on the backbone features
    error_weight: float = 5.0      # of the per-photo weighted squared chroma error against cross-entropy
    error_floor: float = 10.0      # added to a photo's mean chroma energy before dividing by it
    seed: int = 0
    self_reference_every: int = 4  # every n-th photo is also seen with a crop of itself as a reference
    self_reference_crop: float = 0.9  # of each side
    scales: tuple[float, ...] = (0.8, 1.0)  # working resolutions each photo is seen at, x short_side
    short_side: int = DEFAULT_WORKING_SHORT_SIDE
    match: MatchSettings = field(default_factory=MatchSettings)


def cell_targets(ab: np.ndarray, grid: tuple[int, int], stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(h, w, 2) chroma -> per cell of the (gh, gw) grid of `stride` px: the share of its pixels in each
    colour bin (Q, gh, gw) and their mean chroma (2, gh, gw)."""
    height, width = ab.shape[:2]
    rows = np.minimum(np.arange(height) // stride, grid[0] - 1)
    columns = np.minimum(np.arange(width) // stride, grid[1] - 1)
    cell = (rows[:, None] * grid[1] + columns[None, :]).ravel()
    cells, bins = grid[0] * grid[1], len(bin_centres())
    counts = np.bincount(cell, minlength=cells).astype(np.float32)
    histogram = np.bincount(cell * bins + bin_of(ab).ravel(), minlength=cells * bins).reshape(cells, bins)
    mean = np.stack([np.bincount(cell, ab[..., c].ravel(), minlength=cells) for c in range(2)], axis=-1)
    histogram = histogram / counts[:, None]
    mean = mean / counts[:, None]
    return (histogram.T.reshape(bins, *grid).astype(np.float32),
            mean.T.reshape(2, *grid).astype(np.float32))


def photo_examples(backbone: Network, photo: Image.Image, references: Sequence[Image.Image],
                   settings: TrainingSettings, short_side: int | None = None) -> list[Example]:
    """The photo and its mirror image, each with the references warped onto it, at working resolution
    (`short_side`, by default the settings')."""
    short_side = short_side or settings.short_side
    working = WorkingImage.of_reference(Reference(photo), short_side)
    reference_images = [WorkingImage.of_reference(Reference(r), short_side) for r in references]
    reference_features = [dense_features(backbone, r.luma, settings.match) for r in reference_images]
    reference_ab = [resize(r.lab[..., 1:], *f.grid) for r, f in zip(reference_images, reference_features)]
    examples = []
    for luma, ab in ((working.luma, working.lab[..., 1:]), (working.luma[:, ::-1], working.lab[:, ::-1, 1:])):
        target = dense_features(backbone, np.ascontiguousarray(luma), settings.match)
        warps = [warp_reference(target, features, colours, settings.match)
                 for features, colours in zip(reference_features, reference_ab)]
        inputs = PriorInputs.of(target, warps)
        histogram, cell_ab = cell_targets(ab, target.grid, settings.match.stride)
        examples.append(Example(
            PriorInputs(inputs.levels.half(), inputs.global_descriptor, inputs.exemplar, inputs.reference_ab),
            torch.from_numpy(histogram).half(), torch.from_numpy(cell_ab),
            float((ab.astype(np.float64) ** 2).sum(axis=-1).mean())))
    return examples


NORMALISATION_SAMPLE = 4000  # examples the feature statistics are taken from, at most
# The settings the examples themselves depend on (the rest only shape training).
_EXAMPLE_SETTINGS = ("self_reference_every", "self_reference_crop", "scales", "short_side", "match")


def open_example_store(index, directory: str | Path, settings: TrainingSettings = TrainingSettings(),
                       memory_budget: int = DEFAULT_MEMORY_BUDGET) -> ExampleStore:
    """The folder of examples for photos searched in the opened `index` under `settings`: new, or one
    prepared before under the same index and settings (anything else is refused). Up to `memory_budget`
    bytes of examples stay in memory once written or read."""
    example_settings = {name: value for name, value in asdict(settings).items() if name in _EXAMPLE_SETTINGS}
    return ExampleStore(directory, {
        "backbone": index.network.name, "fingerprint": index.network.fingerprint,
        "index": str(Path(index.path).resolve()), "index_images": len(index),
        "references": REFERENCES_SEEN, "settings": example_settings}, memory_budget)


def collect_examples(index, photos: Sequence[Path], store: ExampleStore,
                     settings: TrainingSettings = TrainingSettings(), progress: bool = True,
                     workers: int | None = None) -> list[str]:
    """Into `store`, the examples of colour photos, each with its top REFERENCES_SEEN references from the
    opened `index` (a photo the index holds is left out of its own references), and for every
    `self_reference_every`-th photo also with a crop of itself in first place; at each of the settings'
    scales. Photos the store already holds are passed over, as are grayscale photos. Searches run in turn;
    the examples of `workers` photos (default: one per forward stream) are made side by side, and only a
    few photos are in memory at once. Returns the photos that could not be read, with the reason."""
    workers = workers or forward_streams(index.network.device)
    unreadable = []
    with ThreadPoolExecutor(workers) as pool, \
            tqdm(total=len(photos), unit="photo", desc="preparing", disable=not progress) as bar:
        pending = deque()

        def finish_oldest() -> None:
            key, future = pending.popleft()
            store.add(key, future.result())
            bar.update()

        for number, photo in enumerate(photos):
            key = photo_key(photo)
            try:
                image = None if key in store else decode(photo).image.convert("RGB")
            except ImageError as error:
                unreadable.append(str(error))
                image = None
            if image is None or is_grayscale(image):
                bar.update()
                continue
            own = Path(photo).resolve()
            response = index.search(image.convert("L"), k=REFERENCES_SEEN + 1)
            paths = [r.path for r in response.results if Path(r.path).resolve() != own][:REFERENCES_SEEN]
            references = [decode(path, min_short_side=2 * settings.short_side).image for path in paths]
            with_itself = bool(settings.self_reference_every) and number % settings.self_reference_every == 0
            made = pool.submit(_examples_of_photo, index.network, image, references, with_itself, settings)
            pending.append((key, made))
            if len(pending) > 2 * workers:
                finish_oldest()
        while pending:
            finish_oldest()
    return unreadable


def _examples_of_photo(backbone: Network, image: Image.Image, references: list[Image.Image],
                       with_itself: bool, settings: TrainingSettings) -> list[Example]:
    reference_sets = [references] if references else []
    if with_itself:
        own_crop = _centre_crop(image, settings.self_reference_crop)
        reference_sets.append([own_crop] + references[:REFERENCES_SEEN - 1])
    return [example for scale in settings.scales for chosen in reference_sets
            for example in photo_examples(backbone, image, chosen, settings,
                                          round(settings.short_side * scale))]


def _centre_crop(image: Image.Image, keep: float) -> Image.Image:
    width, height = image.size
    left, top = round(width * (1 - keep) / 2), round(height * (1 - keep) / 2)
    return image.crop((left, top, width - left, height - top))


def train_prior(examples: Sequence[Example], backbone: Network,
                settings: TrainingSettings = TrainingSettings(), progress: bool = True,
                metadata: dict | None = None) -> ChromaPrior:
    """An ensemble trained on `examples`: an ExampleStore, or a list of Examples."""
    if not examples:
        raise InvalidArgumentError("no training examples", "give colour photos")
    if isinstance(examples, ExampleStore):
        used_bins, grids = examples.bins_seen, examples.grids
    else:
        used_bins = bins_seen_by(examples)
        grids = [e.grid for e in examples]
    normalisation = _normalisation(examples)
    centres = torch.from_numpy(bin_centres()[used_bins])
    networks = []
    for member in range(settings.networks):
        torch.manual_seed(settings.seed + member)  # the initial weights too, whatever ran before
        network = PriorNetwork(len(normalisation.feature_mean), len(normalisation.global_mean),
                               int(used_bins.sum()), settings.width)
        _fit(network, examples, grids, normalisation, used_bins, centres, settings, settings.seed + member,
             progress, f"network {member + 1}/{settings.networks}")
        networks.append(network)
    info = {"examples": len(examples), "settings": {k: v for k, v in vars(settings).items() if k != "match"}}
    return ChromaPrior(networks, normalisation, used_bins, backbone.name, backbone.fingerprint,
                       {**info, **(metadata or {})})


def _normalisation(examples: Sequence[Example]) -> Normalisation:
    """Per-channel statistics, the mean over examples of each example's mean and variance, from all
    examples or NORMALISATION_SAMPLE of them spread evenly; read one at a time."""
    chosen = np.unique(np.linspace(0, len(examples) - 1, min(len(examples), NORMALISATION_SAMPLE)).round())
    mean_sum = variance_sum = 0.0
    descriptors = []
    for number in chosen:
        inputs = examples[int(number)].inputs
        levels = inputs.levels.float().flatten(1)
        mean_sum = mean_sum + levels.mean(dim=1)
        variance_sum = variance_sum + levels.var(dim=1, unbiased=False)
        descriptors.append(inputs.global_descriptor)
    descriptors = torch.stack(descriptors)
    return Normalisation(mean_sum / len(chosen), (variance_sum / len(chosen)).add(1e-6).sqrt(),
                         descriptors.mean(0), descriptors.std(0, unbiased=False) + 1e-3)


def _fit(network: PriorNetwork, examples: Sequence[Example], grids: list[tuple[int, int]],
         normalisation: Normalisation, used_bins: np.ndarray, centres: torch.Tensor,
         settings: TrainingSettings, seed: int, progress: bool, description: str) -> None:
    generator = np.random.default_rng(seed)
    torch.manual_seed(seed)
    used = torch.from_numpy(used_bins)
    crop_rows = min(settings.crop, min(rows for rows, _ in grids))
    crop_columns = min(settings.crop, min(columns for _, columns in grids))
    optimiser = torch.optim.Adam(network.parameters(), settings.learning_rate / 2,
                                 weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, settings.learning_rate,
                                                   total_steps=settings.steps)
    network.train()
    for _ in tqdm(range(settings.steps), unit="step", desc=description, disable=not progress):
        batch = [_crop(examples[i], crop_rows, crop_columns, generator)
                 for i in generator.integers(0, len(examples), settings.batch)]
        inputs = [b.inputs for b in batch]
        levels, global_descriptor = normalisation.apply(torch.stack([i.levels for i in inputs]),
                                                        torch.stack([i.global_descriptor for i in inputs]))
        levels = F.dropout(levels, settings.dropout)
        reference_bins = spread_over_bins(torch.stack([i.reference_ab for i in inputs]), centres)
        logits = network(levels, global_descriptor, torch.stack([i.exemplar for i in inputs]), reference_bins)
        log_probabilities = torch.log_softmax(logits, dim=1)
        histograms = torch.stack([b.colour_bins for b in batch])[:, used]
        loss = -(histograms * log_probabilities).sum(dim=1).mean()
        expected = torch.einsum("bqhw,qc->bchw", log_probabilities.exp(), centres)
        error = ((expected - torch.stack([b.cell_ab for b in batch])) ** 2).sum(dim=1).mean(dim=(1, 2))
        energy = torch.tensor([b.energy for b in batch], dtype=torch.float32)
        loss = loss + settings.error_weight * (error / (energy + settings.error_floor)).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    network.eval()


def _crop(example: Example, rows: int, columns: int, generator: np.random.Generator) -> Example:
    grid_rows, grid_columns = example.grid
    top = int(generator.integers(0, grid_rows - rows + 1))
    left = int(generator.integers(0, grid_columns - columns + 1))
    window = (slice(None), slice(top, top + rows), slice(left, left + columns))
    inputs = example.inputs
    cropped = PriorInputs(inputs.levels[window].float(), inputs.global_descriptor, inputs.exemplar[window],
                          inputs.reference_ab[window])
    return Example(cropped, example.colour_bins[window].float(), example.cell_ab[window], example.energy)


def _comma_separated(kind: type) -> Callable[[str], tuple]:
    """An argparse type: comma-separated numbers, so that a typo is a usage error, not a traceback."""
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(item) for item in text.split(",") if item.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None

    return parse


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m colorize.training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path, help="A folder of colour photos to learn from.")
    parser.add_argument("--index", type=Path, required=True, help="The index that gives each photo its "
                        "references (its backbone is the one the prior is for).")
    parser.add_argument("-o", "--output", type=Path, required=True, help="Where to save the prior.")
    parser.add_argument("--skip-every", type=int, default=0, help="With --skip-offsets: leave out the photos "
                        "whose position in the sorted list, modulo this, is one of the offsets.")
    parser.add_argument("--skip-offsets", type=_comma_separated(int), default="",
                        help="Comma-separated, e.g. 0,4.")
    parser.add_argument("--networks", type=int, default=TrainingSettings.networks,
                        help="How many networks to train and average (default %(default)s).")
    parser.add_argument("--steps", type=int, default=TrainingSettings.steps,
                        help="Training steps per network (default %(default)s).")
    parser.add_argument("--width", type=int, default=TrainingSettings.width,
                        help="Channels of each network's hidden layers (default %(default)s).")
    parser.add_argument("--scales", type=_comma_separated(float),
                        default=",".join(f"{x:g}" for x in TrainingSettings.scales),
                        help="Comma-separated working resolutions, relative to "
                        f"{DEFAULT_WORKING_SHORT_SIDE} px, at which every photo is seen.")
    parser.add_argument("--seed", type=int, default=TrainingSettings.seed,
                        help="Seed of the first network; the others take the next ones.")
    parser.add_argument("--examples", type=Path, default=None, help="Folder for the prepared examples "
                        "(default: OUTPUT with .examples in place of its suffix); a run cut short goes on "
                        "from what it holds.")
    parser.add_argument("--memory", type=float, default=DEFAULT_MEMORY_BUDGET / 2**30,
                        help="GiB of prepared examples to keep in memory (default %(default)g); the rest are "
                        "read from the examples folder as training samples them.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the backbone prepares the "
                        "examples (the small networks train on the CPU).")
    parser.add_argument("--keep-examples", action="store_true",
                        help="Keep the examples folder after saving the prior (to train again from it).")
    args = parser.parse_args(argv)
    try:
        _train_from_folder(args)
    except RefsearchError as error:
        print(f"error: {error.message}" + (f"\nhint: {error.hint}" if error.hint else ""), file=sys.stderr)
        raise SystemExit(2) from None
    except USER_FILE_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _train_from_folder(args: argparse.Namespace) -> None:
    from refsearch import Index

    photos = [image.path for image in find_images(args.photos)]
    offsets = set(args.skip_offsets)
    if args.skip_every:
        photos = [p for i, p in enumerate(photos) if i % args.skip_every not in offsets]
    settings = TrainingSettings(networks=args.networks, steps=args.steps, width=args.width, seed=args.seed,
                                scales=args.scales)
    folder = args.examples or args.output.with_suffix(".examples")
    with Index.open(args.index, device=args.device) as index:
        examples = open_example_store(index, folder, settings, int(args.memory * 2**30))
        if examples.photos:
            print(f"{folder}: going on from {examples.photos} photos prepared before")
        for reason in collect_examples(index, photos, examples, settings):
            print(f"skipped: {reason}")
        if not examples:
            shutil.rmtree(folder)
            raise InvalidArgumentError(f"no colour photos to learn from in {args.photos}")
        skipped = f"every {args.skip_every}th from {sorted(offsets)}" if args.skip_every else "none"
        prior = train_prior(examples, index.network, settings, metadata={
            "photos": len(photos), "photo_folder": args.photos.name, "skipped": skipped})
    prior.save(args.output)
    print(f"saved {args.output}: {settings.networks} networks from {len(examples)} examples "
          f"({examples.photos} photos, their mirror images and some with themselves as a reference)")
    if not args.keep_examples:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
