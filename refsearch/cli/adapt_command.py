"""`adapt`: gray-adapted backbone weights from a folder of colour photos."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer

from .app import app
from .common import limit_pixels, max_pixels_option, print_json, user_errors


@app.command("adapt")
def adapt_command(
    ctx: typer.Context,
    photos: Path = typer.Argument(..., help="Folder of colour photos, searched recursively; ImageNet wnid folders "
                                  "or file names (n01440764_*.JPEG) add their labels to the training."),
    output: Path = typer.Option(..., "-o", "--output", help="Adapted weights file to write (e.g. gray.pt); "
                                "give it to build-index, query and colorize as --weights."),
    backbone: str = typer.Option("efficientnet-lite2", "--backbone", help="Network to adapt."),
    weights: str = typer.Option("imagenet", "--weights", help="Weights to start from: a state dict file, or "
                                "a name (efficientnet-lite2: imagenet, gray)."),
    epochs: int = typer.Option(4, "--epochs", min=1, help="Passes over the photos."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Photos per step."),
    learning_rate: float = typer.Option(5e-4, "--lr", min=0.0, help="AdamW learning rate (cosine schedule)."),
    input_size: int = typer.Option(0, "--input-size", min=0, help="Square the network sees (0: its native "
                                   "size, 260 for efficientnet-lite2)."),
    device: str = typer.Option("cpu", "--device", help="Where to train: cpu or cuda."),
    max_pixels: int = max_pixels_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Fine-tune the backbone so that on a photo's luminance it gives what it gives on the colour photo.

    Needs no labels: the network on each colour photo teaches itself on the photo's luminance (logits and
    global descriptor, on the same random crops). Only the early layers and the batch-norm parameters
    change, so the output is small. Interrupted, the same command resumes from the last finished epoch.
    """
    limit_pixels(ctx, max_pixels)
    with user_errors("run the same command again to resume from the last finished epoch"):
        from ..adapt import AdaptSettings, adapt_backbone

        settings = AdaptSettings(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate)
        summary = adapt_backbone(photos, output, backbone=backbone, weights=weights, input_size=input_size,
                                 settings=settings, device=device, progress=not quiet)
    if as_json:
        print_json(asdict(summary))
        return
    resumed = f", resumed after epoch {summary.resumed_from_epoch}" if summary.resumed_from_epoch else ""
    typer.echo(f"{summary.output}: adapted on {summary.photos} photos ({summary.labelled} labelled, "
               f"{summary.skipped} unreadable) for {summary.epochs} epochs in {summary.seconds:.0f} s{resumed}; "
               f"loss by epoch {', '.join(f'{loss:.3f}' for loss in summary.losses)}")
