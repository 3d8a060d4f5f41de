"""What the inference runtime computes against torch (the baseline) on the sample photos, in this run:
the lowest cosine of the global descriptors and of the cell descriptors (per photo, per cell; vectors
near zero left out, as the export's own check does), the largest
logit difference and the top-1 class agreement, at the backbone's input size; then the feature maps
colorize reads (lowest cosine per map position) on some of the photos at their working size.

Targets: cosines >= 1 - 1e-4 (an index built with one runtime is queried with the other), the same top-1
class everywhere.

    python bench/runtime_agreement.py [--photos 900] [--maps 20] [--backbone efficientnet-lite2]
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from benchlib import load_avg, machine, sample_photos
from refsearch import IndexConfig
from refsearch.features import load_prepared
from refsearch.network import INFERENCE_RUNTIME, open_network
from refsearch.runtime.graph import lowest_cosine

BATCH = 8


def positions(array: np.ndarray) -> np.ndarray:
    """(B, C, ...) -> one row of C channels per image and position, as `lowest_cosine` compares rows."""
    return np.moveaxis(array, 1, -1).reshape(-1, array.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=900)
    parser.add_argument("--maps", type=int, default=20, help="Photos whose feature maps are compared.")
    parser.add_argument("--backbone", default="efficientnet-lite2")
    parser.add_argument("--runtime", default=INFERENCE_RUNTIME)
    args = parser.parse_args()
    print(f"machine: {machine()}; load average at start {load_avg()}")
    baseline = open_network(args.backbone, runtime="torch")
    compared = open_network(args.backbone, runtime=args.runtime)
    config, size = IndexConfig(backbone=args.backbone), baseline.input_size
    photos = sample_photos()[:args.photos]
    global_low = cell_low = 1.0
    logit_diff, same_top1 = 0.0, 0
    for start in range(0, len(photos), BATCH):
        batch = np.stack([load_prepared(photo, config, size).network_input for photo in photos[start:start + BATCH]])
        want, got = baseline.extract(batch), compared.extract(batch)
        global_low = min(global_low, lowest_cosine(want.global_descriptor, got.global_descriptor))
        cell_low = min(cell_low, lowest_cosine(positions(want.cells), positions(got.cells)))
        logit_diff = max(logit_diff, float(np.abs(want.logits - got.logits).max()))
        same_top1 += int((want.logits.argmax(1) == got.logits.argmax(1)).sum())
    maps_low = 1.0
    for photo in photos[:args.maps]:
        gray = Image.open(photo).convert("L")
        scale = 256 / min(gray.size)  # colorize's working size: short side 256
        gray = np.asarray(gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.BICUBIC))
        want, got = baseline.extract(gray[None], feature_maps=True), compared.extract(gray[None], feature_maps=True)
        for want_map, got_map in zip(want.feature_maps, got.feature_maps):
            maps_low = min(maps_low, lowest_cosine(positions(want_map), positions(got_map)))
    print(f"\n{compared.runtime} {compared.runtime_version} against torch {baseline.runtime_version}, "
          f"{args.backbone} at {size} px, {len(photos)} sample photos (feature maps: {args.maps} of them at "
          "short side 256)")
    print("| lowest cosine, global | lowest cosine, cells | lowest cosine, feature maps | max abs logit diff "
          "| same top-1 |\n|---:|---:|---:|---:|---:|")
    print(f"| {global_low:.6f} | {cell_low:.6f} | {maps_low:.6f} | {logit_diff:.2e} | {same_top1} / {len(photos)} |")
    print(f"load average at end {load_avg()}")


if __name__ == "__main__":
    main()
