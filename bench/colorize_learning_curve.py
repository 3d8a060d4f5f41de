"""How the chroma prior's quality grows with the photos it learns from.

Trains priors by colorize.training on nested subsets of the 700 training photos (every 4th, every 2nd, all:
the sample photos that are neither held out nor development photos, as for the bundled prior), each from
the benchmark's index of the 800 photos not held out, and scores each on the development photos as
colorize_tradeoff.py does: PSNR against the gray input at 0.7 of the originals' colorfulness (one chroma
scale for all photos, interpolated between scales), with the per-photo oracle beside it. The held-out
photos are not used. Priors are kept in the bench cache and reused by a later run with the same settings.

    python bench/colorize_learning_curve.py [--networks 2] [--every 4,2,1] [--plot docs/colorize_learning_curve.png]
"""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from benchlib import CACHE, load_avg, machine, sample_photos
from colorize_quality import holdout_index, splits
from colorize_tradeoff import gain_at, oracle, save_gain_plot, scale_curve

from colorize import training
from colorize.exemplar import ExemplarColorizer
from refsearch import Index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", type=int, default=2, help="Networks per prior (the bundled one has 5).")
    parser.add_argument("--every", default="4,2,1", help="Train on every n-th training photo, for each n.")
    parser.add_argument("--colorfulness", type=float, default=0.7)
    parser.add_argument("--topk", type=int, default=3)
    parser.add_argument("--plot", type=Path, default=None, help="Save the curve here.")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average at start {load_avg()}")

    photos = sample_photos()
    held_out, development = splits(photos)
    excluded = set(held_out) | set(development)
    training_photos = [photo for photo in photos if photo not in excluded]
    index_path = holdout_index(photos, set(held_out))
    folder = CACHE / "learning-curve"
    rows, scored = [], 0
    for every in (int(n) for n in args.every.split(",")):
        subset = training_photos[::every]
        prior = folder / f"prior-{len(subset)}-photos-{args.networks}-networks.pt"
        if not prior.is_file():
            _train(subset, folder / f"photos-{len(subset)}", index_path, prior, args.networks)
        with Index.open(index_path) as index:
            colorizer = ExemplarColorizer(index.network, prior=prior)
            gain, ratio, _ = scale_curve(index, colorizer, development, args.topk, indexed=True)
        own = gain_at(gain, ratio, args.colorfulness)
        best, _ = oracle(gain, ratio, args.colorfulness)
        rows.append((len(subset), own, best))
        scored = len(gain)
        print(f"{len(subset)} photos: {own:+.2f} dB against the gray input at colorfulness "
              f"{args.colorfulness:g} (per-photo oracle {best:+.2f})", flush=True)

    print(f"\n{scored} development photos, top-{args.topk} references, priors of {args.networks} networks; "
          f"load average at end {load_avg()}")
    print(f"| training photos | dB vs gray input at {args.colorfulness:g} | per-photo oracle |")
    print("|---:|---:|---:|")
    for count, own, best in rows:
        print(f"| {count} | {own:+.2f} | {best:+.2f} |")
    if args.plot:
        plot(rows, args, args.plot)
        print(f"plot: {args.plot}")


def _train(subset: list[Path], links: Path, index_path: Path, prior: Path, networks: int) -> None:
    """A prior from these photos alone: a folder of links to them, through the training command."""
    shutil.rmtree(links, ignore_errors=True)
    links.mkdir(parents=True)
    for photo in subset:
        os.symlink(photo.resolve(), links / photo.name)
    training.main([str(links), "--index", str(index_path), "-o", str(prior), "--networks", str(networks)])


def plot(rows: list[tuple[int, float, float]], args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [count for count, _, _ in rows]
    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    axes.plot(counts, [own for _, own, _ in rows], "o-",
              label=f"one chroma scale for all photos, at colorfulness {args.colorfulness:g}")
    axes.plot(counts, [best for _, _, best in rows], "*--", markersize=9, label="per-photo oracle scale")
    axes.set_xscale("log", base=2)
    axes.set_xticks(counts, [str(count) for count in counts])
    axes.set_title("development photos", fontsize=9)
    save_gain_plot(figure, axes, "photos the chroma prior learned from", "center right", path)


if __name__ == "__main__":
    main()
