"""Colour hints: how much a few points with their true colours add, on held-out photos.

    python bench/hints.py [--split holdout|dev] [--limit N] [--http 10] [--threads 1]
                          [--plot docs/colorize_hints.png]

The held-out photos of colorize_quality.py (every 9th sample photo from the first; the prior never saw
them), each resized to short side 256 (the working resolution, so nothing is resampled on the way out)
and colorized from its re-ranked top-3 references in the index of the other 800. Each photo gets 50
points at random positions (seeded by the photo's place in the split), each with the mean colour of the
original's 7x7 patch around it, rounded to #rrggbb as a user would give it; n points are the first n.
Rows, as mean PSNR (RGB) against the originals at 0, 1, 2, 5, 10, 20 and 50 points:

- the gray photo (whatever the points);
- `exemplar` with the points (0 points: `exemplar` as it is);
- plain propagation: Levin et al. (2004) of the same points over the gray photo, with the same luminance
  affinities and nothing from references or the prior (colorize's own propagation with no method colour,
  its trust held at 0 and its decay near 0), at the full working resolution and on the half-resolution
  grid the hints use.

Also the time per update of the library's render at 256 px: adding a 10th point to 9 (one new point to
solve for, then the full-size composition), and the first point on a photo (which factorises its
structure); and, on the first `--http` photos, the same update through the server's endpoint in process
(the page's request without the browser). With `--split dev`, the development photos instead (each photo's own file dropped from its
references), on which the hint settings were chosen.
"""
from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
from benchlib import add_threads_option, announce, load_avg, sample_photos
from colorize_quality import holdout_index, retrieve_references, splits
from PIL import Image

from colorize import ChromaPrediction, ColorizeSession, Hint, HintSettings, colorize_session, create_colorizer
from colorize.metrics import psnr
from colorize.resample import working_size
from refsearch import Index
from refsearch.images import decode, is_grayscale

COUNTS = (0, 1, 2, 5, 10, 20, 50)
PATCH = 7
SHORT_SIDE = 256
ROWS = ("gray photo", "exemplar with the points", "plain propagation (working resolution)",
        "plain propagation (hints' half-resolution grid)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("holdout", "dev"), default="holdout")
    parser.add_argument("--holdout", type=int, default=100)
    parser.add_argument("--topk", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="Only the first N photos of the split.")
    parser.add_argument("--plot", type=Path, default=None, help="Save PSNR against points here.")
    parser.add_argument("--http", type=int, default=10, help="Also time an update through the server's "
                        "endpoint, in process, on the first N photos (0: not).")
    add_threads_option(parser)
    args = parser.parse_args()
    announce(args.threads)

    photos = sample_photos()
    held_out, development = splits(photos, args.holdout)
    targets = (held_out if args.split == "holdout" else development)[: args.limit]
    scores = {row: {count: [] for count in COUNTS} for row in ROWS}
    first_point, one_more, over_http = [], [], []
    skipped = []
    with Index.open(holdout_index(photos, set(held_out))) as index:
        exemplar = create_colorizer("exemplar", backbone=index.network)
        for number, photo in enumerate(targets):
            original = decode(photo).image.convert("RGB")
            if is_grayscale(original):
                skipped.append(photo.name)
                continue
            size = working_size(original.size, SHORT_SIDE)
            original = original.resize(size, Image.BILINEAR, reducing_gap=3.0)
            truth = np.asarray(original)
            gray = original.convert("L")
            references = retrieve_references(index, gray, args.topk, rerank=True,
                                             own_name=photo.name if args.split == "dev" else None)
            points = true_points(truth, np.random.default_rng(number))
            sessions = {ROWS[1]: colorize_session(gray, references, exemplar),
                        ROWS[2]: plain_propagation(gray, scale=1.0),
                        ROWS[3]: plain_propagation(gray, scale=HintSettings().scale)}
            started = time.perf_counter()
            sessions[ROWS[1]].render(points[:1])
            first_point.append(time.perf_counter() - started)
            sessions[ROWS[1]].render(points[:9])
            started = time.perf_counter()
            sessions[ROWS[1]].render(points[:10])
            one_more.append(time.perf_counter() - started)
            gray_score = psnr(np.asarray(gray.convert("RGB")), truth)
            for count in COUNTS:
                scores[ROWS[0]][count].append(gray_score)
                for row, session in sessions.items():
                    scores[row][count].append(psnr(np.asarray(session.render(points[:count]).image), truth))
            print(f"{number + 1}/{len(targets)} {photo.name}: " + ", ".join(
                f"{row.split(' ')[0]} {scores[row][10][-1]:.2f}" for row in ROWS[1:3]) + " at 10 points",
                flush=True)
            if len(over_http) < args.http:
                over_http.append(update_over_http(index, gray, points))

    counted = len(scores[ROWS[0]][0])
    print(f"\n{counted} photos of the {args.split} split at short side {SHORT_SIDE} ({len(skipped)} left "
          f"out, their originals grayscale: {', '.join(skipped) or 'none'}); top-{args.topk} re-ranked "
          f"references; load average at end {load_avg()}")
    print(table(scores))
    print(verdict(scores))
    print(f"time per update (exemplar, the library's render at {SHORT_SIDE} px): a 10th point added to 9, "
          f"median {np.median(one_more) * 1e3:.0f} ms, p90 {np.percentile(one_more, 90) * 1e3:.0f} ms; the "
          f"first point on a photo (factorising it), median {np.median(first_point) * 1e3:.0f} ms, p90 "
          f"{np.percentile(first_point, 90) * 1e3:.0f} ms")
    if over_http:
        print(f"time per update over HTTP (a 10th point, POST /api/sessions/ID/render in process, the answer "
              f"with its two PNGs), {len(over_http)} photos: median {np.median(over_http) * 1e3:.0f} ms, "
              f"p90 {np.percentile(over_http, 90) * 1e3:.0f} ms")
    if args.plot:
        plot(scores, args.plot)
        print(f"plot: {args.plot}")


def update_over_http(index: Index, gray: Image.Image, points: list[Hint]) -> float:
    """Seconds of the page's update adding a 10th point to 9, through the app in process (no browser):
    the request, the render and the answer with the result and confidence as PNG data URLs."""
    from fastapi.testclient import TestClient

    from refsearch.server import create_app

    upload = io.BytesIO()
    gray.save(upload, "PNG")
    as_json = {"hints": [point.to_dict() for point in points[:9]]}
    with TestClient(create_app(index), base_url="http://127.0.0.1") as client:  # a loopback name, as served
        session = client.post("/api/colorize?topk=3&output=json",
                              files={"image": ("gray.png", upload.getvalue())},
                              data={"hints": json.dumps(as_json)}).json()["session"]
        started = time.perf_counter()
        answer = client.post(f"/api/sessions/{session}/render",
                             json={"hints": [point.to_dict() for point in points[:10]]})
        seconds = time.perf_counter() - started
    answer.raise_for_status()
    return seconds


def true_points(truth: np.ndarray, rng: np.random.Generator, count: int = max(COUNTS)) -> list[Hint]:
    """Points at random positions, each with the mean colour of the original's PATCH x PATCH patch there."""
    height, width, _ = truth.shape
    half = PATCH // 2
    points = []
    for x, y in zip(rng.integers(0, width, count), rng.integers(0, height, count)):
        patch = truth[max(0, y - half): y + half + 1, max(0, x - half): x + half + 1].reshape(-1, 3)
        red, green, blue = np.clip(np.rint(patch.mean(axis=0)), 0, 255).astype(int)
        points.append(Hint(int(x), int(y), f"#{red:02x}{green:02x}{blue:02x}"))
    return points


def plain_propagation(gray: Image.Image, scale: float) -> ColorizeSession:
    """Levin et al.'s propagation of the points over the gray photo: colorize's own, with no method colour
    under the points, its trust held at 0 and its decay near 0."""
    luma = np.asarray(gray)
    nothing = ChromaPrediction(np.zeros(luma.shape + (2,), np.float32), np.zeros(luma.shape, np.float32),
                               np.full(luma.shape, -1, np.int8))
    settings = HintSettings(scale=scale, trust=0.0, trust_spread=0.0, decay=1e-6)
    return ColorizeSession.of_prediction(gray, luma, nothing, "levin", settings)


def table(scores: dict) -> str:
    lines = ["| points | " + " | ".join(str(count) for count in COUNTS) + " |",
             "|---|" + "---:|" * len(COUNTS)]
    for row, by_count in scores.items():
        lines.append(f"| {row} | " + " | ".join(f"{np.mean(by_count[count]):.2f}" for count in COUNTS) + " |")
    return "\n".join(lines)


def verdict(scores: dict) -> str:
    ours = {count: np.mean(scores[ROWS[1]][count]) for count in COUNTS}
    plain = {count: max(np.mean(scores[row][count]) for row in ROWS[2:]) for count in COUNTS}
    margins = ", ".join(f"{count}: {ours[count] - plain[count]:+.2f}" for count in COUNTS[1:])
    above = all(ours[count] > plain[count] for count in COUNTS[1:])
    gain = ours[10] - ours[0]
    return (f"exemplar with the points against the better plain propagation, dB by points ({margins}): "
            f"{'above at every count' if above else 'NOT above at every count'} (target: above from 1 on)\n"
            f"at 10 points, {gain:+.2f} dB over exemplar without points (target: at least +3)")


def plot(scores: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    styles = {ROWS[0]: ("0.5", ":"), ROWS[1]: ("C0", "-"), ROWS[2]: ("C1", "--"), ROWS[3]: ("C2", "-.")}
    for row, by_count in scores.items():
        colour, line = styles[row]
        axes.plot(COUNTS, [np.mean(by_count[count]) for count in COUNTS], line, color=colour, marker="o",
                  markersize=4, label=row)
    axes.set_xscale("symlog", linthresh=1)
    axes.set_xticks(COUNTS, [str(count) for count in COUNTS])
    axes.set_xlabel("points (true colours, 7x7 mean, random positions)")
    axes.set_ylabel("mean PSNR (dB)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
