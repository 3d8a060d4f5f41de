"""The PSNR / colorfulness trade-off of colorize methods, against the target (above the gray input's PSNR at
0.7 of the originals' colorfulness).

Colorizes the same held-out photos as colorize_quality.py from their re-ranked top-k references, then
puts each result's chroma back at a range of scales (0 is the grayscale input, 1 the method's output)
and scores every scale against the colour originals. Prints, per scale, the mean PSNR against the gray
input's and the colorfulness against the originals'. Then two bounds:

- the best single scale whose colorfulness reaches --colorfulness of the originals' (what any global
  saturation setting of this method can do);
- the per-photo oracle: each photo at the scale that is best for it (chosen knowing the original) under
  the same colorfulness constraint. The gap between the two is what knowing per photo how right the
  colours are would be worth; the method's own signals (match similarity, agreement between references)
  would have to predict it;
- a weaker oracle that knows only how colourful each original is, not its colours: each photo's chroma
  scaled in proportion to its original's RMS chroma difference from gray (from the gray input's PSNR).

And where the PSNR is lost: the mean gain at the method's own output (scale 1), by how colourless the
originals are (bands of the gray input's PSNR: a nearly colourless original has a high one).

With `--split dev`, the development photos instead (every 9th from the 5th, which the index holds; each
photo's own file is dropped from its references): the split on which settings are tuned. With `--prior
FILE`, `exemplar` uses that chroma prior (one trained by colorize.training) instead of the bundled one.

    python bench/colorize_tradeoff.py [--methods exemplar,exemplar-untrained] [--split holdout|dev]
                                      [--holdout 100] [--topk 3] [--prior FILE]
                                      [--plot docs/colorize_tradeoff.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from benchlib import load_avg, machine, sample_photos
from colorize_quality import holdout_index, retrieve_references, splits

from colorize import colorize, create_colorizer
from colorize.exemplar import ExemplarColorizer
from colorize.metrics import colorfulness, psnr
from colorize.resample import scale_chroma
from refsearch import Index
from refsearch.images import decode, is_grayscale

SCALES = np.round(np.arange(0.0, 3.01, 0.125), 3)
GRAY_PSNR_BANDS = [(0.0, 22.0), (22.0, 26.0), (26.0, 30.0), (30.0, np.inf)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holdout", type=int, default=100)
    parser.add_argument("--topk", type=int, default=3)
    parser.add_argument("--colorfulness", type=float, default=0.7, help="The colorfulness floor, as a "
                        "fraction of the originals' mean.")
    parser.add_argument("--plot", type=Path, default=None, help="Save the trade-off curves here.")
    parser.add_argument("--methods", default="exemplar", help="Comma-separated colorize methods.")
    parser.add_argument("--split", choices=("holdout", "dev"), default="holdout")
    parser.add_argument("--prior", type=Path, default=None, help="A chroma prior for exemplar to use.")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average at start {load_avg()}")

    photos = sample_photos()
    held_out, development = splits(photos, args.holdout)
    targets = held_out if args.split == "holdout" else development
    curves = {}
    with Index.open(holdout_index(photos, set(held_out))) as index:
        for method in args.methods.split(","):
            colorizer = (ExemplarColorizer(index.network, prior=args.prior)
                         if args.prior and method == "exemplar" else
                         create_colorizer(method, backbone=index.network))
            curves[method] = scale_curve(index, colorizer, targets, args.topk, args.split == "dev")
    for method, (gain, ratio, gray_psnr) in curves.items():
        report(method, gain, ratio, gray_psnr, args)
    print(f"load average at end {load_avg()}")
    if args.plot:
        plot(curves, args.colorfulness, args.plot)
        print(f"plot: {args.plot}")


def scale_curve(index: Index, colorizer, targets: list[Path], topk: int, indexed: bool):
    """Per photo and chroma scale: PSNR gain over the gray input, and colorfulness over the originals'
    mean."""
    psnrs, colours, gray_psnr, original_colour = [], [], [], []
    for photo in targets:
        original_image = decode(photo).image.convert("RGB")
        if is_grayscale(original_image):
            continue
        original = np.asarray(original_image)
        gray = original_image.convert("L")
        own_name = photo.name if indexed else None
        references = retrieve_references(index, gray, topk, rerank=True, own_name=own_name)
        result = colorize(gray, references, colorizer).image
        scaled = [scale_chroma(np.array(result), np.asarray(gray), s) for s in SCALES]
        psnrs.append([psnr(image, original) for image in scaled])
        colours.append([colorfulness(image) for image in scaled])
        gray_psnr.append(psnr(np.asarray(gray.convert("RGB")), original))
        original_colour.append(colorfulness(original))
    gain = np.array(psnrs) - np.array(gray_psnr)[:, None]
    return gain, np.array(colours) / np.mean(original_colour), np.array(gray_psnr)


def report(method: str, gain: np.ndarray, ratio: np.ndarray, gray_psnr: np.ndarray, args) -> None:
    print(f"\n{method}: {len(gain)} {args.split} photos, from the re-ranked top-{args.topk}; mean PSNR of "
          f"the gray input {np.mean(gray_psnr):.2f} dB")
    print("| chroma scale | PSNR vs gray input (dB) | colorfulness vs originals | photos better than gray |")
    print("|---:|---:|---:|---:|")
    for column, scale in enumerate(SCALES):
        print(f"| {scale:g} | {gain[:, column].mean():+.2f} | {ratio[:, column].mean():.2f} | "
              f"{(gain[:, column] > 0).mean():.0%} |")

    floor = args.colorfulness
    allowed = ratio.mean(axis=0) >= floor
    best_global = int(np.flatnonzero(allowed)[gain.mean(axis=0)[allowed].argmax()]) if allowed.any() else None
    oracle_gain, oracle_ratio = oracle(gain, ratio, floor)
    print(f"\nat colorfulness >= {floor:g} of the originals':")
    print(f"- one scale for all photos, interpolated to colorfulness {floor:g}: "
          f"{gain_at(gain, ratio, floor):+.2f} dB against the gray input")
    if best_global is not None:
        print(f"- best single scale: {SCALES[best_global]:g}, {gain[:, best_global].mean():+.2f} dB against "
              f"the gray input (colorfulness {ratio[:, best_global].mean():.2f})")
    print(f"- per-photo oracle scale: {oracle_gain:+.2f} dB (colorfulness {oracle_ratio:.2f})")
    known_gain, known_ratio = colourfulness_oracle(gain, ratio, gray_psnr, floor)
    print(f"- scale in proportion to each original's RMS chroma: {known_gain:+.2f} dB "
          f"(colorfulness {known_ratio:.2f})")

    own = int(np.flatnonzero(SCALES == 1.0)[0])
    print("\nat the method's own output (scale 1), by the gray input's PSNR (high: a nearly colourless "
          "original):")
    print("| gray input's PSNR (dB) | photos | mean PSNR vs gray input (dB) | share of the mean (dB) |")
    print("|---|---:|---:|---:|")
    for low, high in GRAY_PSNR_BANDS:
        band = (gray_psnr >= low) & (gray_psnr < high)
        label = f"{low:g} to {high:g}" if np.isfinite(high) else f"{low:g} and above"
        share = gain[band, own].sum() / len(gain)
        mean = f"{gain[band, own].mean():+.2f}" if band.any() else "-"
        print(f"| {label} | {band.sum()} | {mean} | {share:+.2f} |")


def gain_at(gain: np.ndarray, ratio: np.ndarray, colour: float) -> float:
    """The mean PSNR gain where the mean colorfulness ratio reaches `colour`, linearly between the two
    nearest scales (the mean colorfulness grows with the scale)."""
    return float(np.interp(colour, ratio.mean(axis=0), gain.mean(axis=0)))


def oracle(gain: np.ndarray, ratio: np.ndarray, floor: float) -> tuple[float, float]:
    """Each photo at its own best scale, trading PSNR for colorfulness at one common price (a Lagrange
    multiplier): the smallest price whose mean colorfulness reaches the floor."""
    rows = np.arange(len(gain))
    for price in np.linspace(0.0, 100.0, 4001):
        choice = (gain + price * ratio).argmax(axis=1)
        if ratio[rows, choice].mean() >= floor:
            return float(gain[rows, choice].mean()), float(ratio[rows, choice].mean())
    raise ValueError(f"no scale up to {SCALES[-1]:g} reaches colorfulness {floor:g} of the originals'")


def colourfulness_oracle(gain: np.ndarray, ratio: np.ndarray, gray_psnr: np.ndarray,
                         floor: float) -> tuple[float, float]:
    """Each photo's chroma scaled by a common factor times its original's RMS chroma difference from gray
    (relative to the mean; 10^(-PSNR/20) of the gray input), the smallest factor whose mean colorfulness
    reaches the floor; the tables are interpolated between scales."""
    weight = 10.0 ** (-gray_psnr / 20.0)
    weight = weight / weight.mean()
    for factor in np.linspace(0.0, SCALES[-1], 1201):
        scales = np.clip(factor * weight, 0.0, SCALES[-1])
        ratios = np.array([np.interp(scale, SCALES, row) for scale, row in zip(scales, ratio)])
        if ratios.mean() >= floor:
            gains = np.array([np.interp(scale, SCALES, row) for scale, row in zip(scales, gain)])
            return float(gains.mean()), float(ratios.mean())
    raise ValueError(f"no factor reaches colorfulness {floor:g} of the originals'")


def plot(curves: dict, floor: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for method, (gain, ratio, _) in curves.items():
        line, = axes.plot(ratio.mean(axis=0), gain.mean(axis=0), "o-", markersize=4,
                          label=f"{method}, chroma scaled 0 to {SCALES[-1]:g}")
        for scale in (0.5, 1.0, 2.0):
            column = int(np.flatnonzero(SCALES == scale)[0])
            axes.annotate(f"x{scale:g}", (ratio[:, column].mean(), gain[:, column].mean()),
                          textcoords="offset points", xytext=(6, 4), fontsize=8, color=line.get_color())
        oracle_gain, oracle_ratio = oracle(gain, ratio, floor)
        axes.plot([oracle_ratio], [oracle_gain], "*", markersize=11, color=line.get_color(),
                  label=f"{method}, per-photo oracle scale")
    right = max(1.0, max(ratio.mean(axis=0).max() for _, ratio, _ in curves.values()))
    axes.axvline(floor, color="gray", linewidth=0.8, linestyle="--")
    axes.fill_between([floor, right], 0, axes.get_ylim()[1], color="green", alpha=0.08,
                      label=f"target: above gray PSNR, colorfulness >= {floor:g}")
    save_gain_plot(figure, axes, "colorfulness / originals' colorfulness", "lower left", path)


def save_gain_plot(figure, axes, xlabel: str, legend_at: str, path: Path) -> None:
    """Finish and save a plot of PSNR gains over the gray input: the zero line, labels, legend, grid."""
    axes.axhline(0.0, color="gray", linewidth=0.8)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("PSNR - gray input's PSNR (dB)")
    axes.legend(fontsize=8, loc=legend_at)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    main()
