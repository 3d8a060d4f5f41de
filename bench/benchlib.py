"""What the benchmark scripts share: where the sample photos are, a cached sample index, the machine."""
from __future__ import annotations

import io
import os
import platform
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(os.environ.get("REFSEARCH_SAMPLE", REPO.parent / "shared" / "data" / "imagenet-sample"))
CACHE = Path(os.environ.get("REFSEARCH_BENCH_CACHE", REPO / "bench" / ".cache"))


def sample_dir() -> Path:
    if not any(SAMPLE.glob("*.JPEG")):
        sys.exit(f"the ImageNet sample photos are not at {SAMPLE}; set REFSEARCH_SAMPLE to their folder")
    return SAMPLE


def sample_photos() -> list[Path]:
    return sorted(sample_dir().glob("*.JPEG"))


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{os.cpu_count()} cores ({cpu}){gpu}, torch {torch.__version__}, torch threads {torch.get_num_threads()}"


def add_threads_option(parser) -> None:
    parser.add_argument("--threads", type=int, default=None, help="Torch threads (default: torch's own).")


def announce(threads: int | None = None) -> None:
    """Set torch's threads when given, and print the machine and its load."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    print(f"machine: {machine()}; load average at start {load_avg()}")


def degraded_copy(path: Path, crop: float = 0.1, short_side: int = 160, quality: int = 60) -> Image.Image:
    """A grayscale copy of a photo, cropped by `crop` of each side, downscaled and JPEG-recompressed."""
    image = Image.open(path).convert("L")
    width, height = image.size
    image = image.crop((round(width * crop), round(height * crop), round(width * (1 - crop)),
                        round(height * (1 - crop))))
    scale = short_side / min(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("L")


def load_avg() -> str:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"
