"""`refsearch adapt`: fine-tune a backbone so that it sees a photo's luminance as it sees the colour photo.

No labels are needed: the network on the colour photo teaches itself on the photo's luminance (its logits,
softened, and its global descriptor); where a photo's folder or file name gives its ImageNet class, that
label teaches too. Both see the same random crop and flip of the photo. Only the early layers, where colour
enters, and the batch-norm scales and shifts are trained; the result is a small file of those tensors on
top of the backbone's ImageNet weights, which `--weights` loads (see `Backbone.load_state`). Training is
resumable: a checkpoint is kept beside the output after every epoch until the last one is done.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import classes
from .errors import InvalidArgumentError
from .images import ImageError, decode, scan_images

# The shortest side photos are kept at in memory for cropping: enough for a 260-pixel crop at 0.35 scale.
_KEPT_SHORT_SIDE = 320


@dataclass(frozen=True)
class AdaptSettings:
    epochs: int = 4
    batch_size: int = 16
    learning_rate: float = 5e-4
    temperature: float = 2.0  # softening of the logits matched between colour and luminance
    descriptor_weight: float = 1.0  # of 1 - cos(global descriptor on luminance, on colour)
    label_weight: float = 0.5  # of the cross-entropy with the folder label, where there is one
    min_crop_scale: float = 0.35
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise InvalidArgumentError("epochs and batch size must be at least 1")
        if not 0 < self.min_crop_scale <= 1:
            raise InvalidArgumentError(f"min_crop_scale must be in (0, 1], got {self.min_crop_scale}")
        if self.learning_rate <= 0 or self.temperature <= 0:
            raise InvalidArgumentError("learning rate and temperature must be positive")


@dataclass(frozen=True)
class AdaptSummary:
    output: str
    photos: int
    labelled: int
    skipped: int
    epochs: int
    resumed_from_epoch: int
    losses: list[float]  # mean loss of each epoch, this run's and the resumed ones'
    seconds: float


def trainable_parameter_names(backbone) -> list[str]:
    """What adaptation trains: the backbone's `adapted_parameters()` (its early layers) and every batch-norm
    scale and shift."""
    import torch

    names = set(backbone.adapted_parameters())
    for module_name, module in backbone.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            names.update(f"{module_name}.{p}" for p, _ in module.named_parameters())
    return sorted(names)


def adapt_backbone(photos: str | os.PathLike, output: str | os.PathLike, *, backbone: str = "efficientnet-lite2",
                   weights: str | os.PathLike | None = "imagenet", input_size: int = 0,
                   settings: AdaptSettings | None = None, device: str = "cpu", progress: bool = True) -> AdaptSummary:
    """Fine-tune `backbone` (starting from `weights`) on the photos under `photos` and write the adapted
    tensors to `output`. Rerunning with the same output resumes from the last finished epoch."""
    import torch

    from .backbones import create_backbone, state_fingerprint
    from .backbones.base import ADAPTED_FORMAT, load_state_dict

    settings = settings or AdaptSettings()
    started = time.perf_counter()
    output = Path(output)
    checkpoint_path = output.with_name(output.name + ".checkpoint")
    teacher = create_backbone(backbone, weights=weights, device=device, input_size=input_size)
    student = create_backbone(backbone, weights=weights, device=device, input_size=input_size)
    names = trainable_parameter_names(student)
    for name, parameter in student.named_parameters():
        parameter.requires_grad_(name in names)
    optimizer = torch.optim.AdamW([p for n, p in student.named_parameters() if n in names],
                                  lr=settings.learning_rate, weight_decay=0.0)
    kept, labels, skipped = _load_photos(Path(photos), progress)
    first_epoch, losses = 0, []
    if checkpoint_path.exists():
        try:
            checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InvalidArgumentError(f"{checkpoint_path} is unreadable ({type(exc).__name__})",
                                       "delete it to start over") from None
        if checkpoint["settings"] != asdict(settings) or checkpoint["photos"] != len(kept):
            raise InvalidArgumentError(f"{checkpoint_path} is a checkpoint of another adaptation",
                                       "delete it to start over, or rerun with the same photos and settings")
    size = student.input_size
    steps = -(-len(kept) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.epochs * steps)
    if checkpoint_path.exists():
        student.load_state_dict(checkpoint["student"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        schedule.load_state_dict(checkpoint["schedule"])
        first_epoch, losses = checkpoint["epoch"], list(checkpoint["losses"])
    teacher.eval()
    student.eval()  # batch-norm statistics stay the ImageNet ones; only the affine parameters learn
    with tqdm(total=(settings.epochs - first_epoch) * len(kept), unit="img", desc="adapting",
              disable=not progress, dynamic_ncols=True) as bar, ThreadPoolExecutor(2) as pool:
        for epoch in range(first_epoch, settings.epochs):
            rng = np.random.default_rng([settings.seed, epoch])
            order = rng.permutation(len(kept))
            batches = [order[i:i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
            seeds = rng.integers(0, 2**31, len(batches))
            upcoming = pool.submit(_augmented, kept, batches[0], size, settings, seeds[0])
            total = 0.0
            for number, rows in enumerate(batches):
                colour = upcoming.result()
                if number + 1 < len(batches):
                    upcoming = pool.submit(_augmented, kept, batches[number + 1], size, settings, seeds[number + 1])
                loss = _step(teacher, student, colour, labels[rows], settings, device)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.detach()) * len(rows)
                bar.update(len(rows))
                bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss.detach()):.3f}", refresh=False)
            losses.append(round(total / len(kept), 4))
            _save_atomically({"student": student.state_dict(), "optimizer": optimizer.state_dict(),
                              "schedule": schedule.state_dict(), "epoch": epoch + 1,
                              "losses": losses, "settings": asdict(settings), "photos": len(kept)}, checkpoint_path)
    # Saved: what differs from the base weights (the trained tensors, and any the starting weights changed).
    base_state = load_state_dict(student.base_weights())
    prefix = f"{student.weights_module}."
    trained = {name.removeprefix(prefix) for name in names}
    adapted = {name: tensor.detach().cpu().clone()
               for name, tensor in getattr(student, student.weights_module).state_dict().items()
               if name in trained or not torch.equal(tensor.cpu(), base_state[name])}
    _save_atomically({"format": ADAPTED_FORMAT, "backbone": backbone,
                      "base_fingerprint": state_fingerprint(base_state), "input_size": size, "state": adapted,
                      "training": {**asdict(settings), "photos": len(kept), "labelled": int((labels >= 0).sum()),
                                   "losses": losses}}, output)
    load_state_dict(output)  # what was written reads back
    checkpoint_path.unlink(missing_ok=True)
    return AdaptSummary(str(output), len(kept), int((labels >= 0).sum()), skipped, settings.epochs, first_epoch,
                        losses, round(time.perf_counter() - started, 1))


def _load_photos(folder: Path, progress: bool) -> tuple[list[np.ndarray], np.ndarray, int]:
    """The photos, RGB, short side at most _KEPT_SHORT_SIDE, and their labels (-1: none)."""
    files = scan_images(folder).files
    if not files:
        raise InvalidArgumentError(f"{folder} holds no image files to adapt on")

    def load(file):
        try:
            image = decode(file.path, min_short_side=_KEPT_SHORT_SIDE).image.convert("RGB")
        except ImageError:
            return None
        scale = _KEPT_SHORT_SIDE / min(image.size)
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
        return np.asarray(image)

    with ThreadPoolExecutor(2) as pool:
        loaded = list(tqdm(pool.map(load, files), total=len(files), unit="img", desc="reading", disable=not progress))
    kept = [(image, file) for image, file in zip(loaded, files) if image is not None]
    if not kept:
        raise InvalidArgumentError(f"none of the {len(files)} images under {folder} could be read")
    labels = np.array([classes.class_index(label) if (label := classes.label_from_path(file.path)) else -1
                       for _, file in kept], np.int64)
    return [image for image, _ in kept], labels, len(files) - len(kept)


def _augmented(photos: list[np.ndarray], rows: np.ndarray, size: int, settings: AdaptSettings,
               seed: int) -> np.ndarray:
    """A random crop (of at least `min_crop_scale` of the area, aspect 3:4 to 4:3) of each photo, flipped
    at random, resized to size x size: (B, size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    out = np.empty((len(rows), size, size, 3), np.uint8)
    for slot, row in enumerate(rows):
        photo = photos[row]
        height, width = photo.shape[:2]
        area = height * width * rng.uniform(settings.min_crop_scale, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        crop_w = int(min(width, round(np.sqrt(area * aspect))))
        crop_h = int(min(height, round(np.sqrt(area / aspect))))
        left, top = rng.integers(0, width - crop_w + 1), rng.integers(0, height - crop_h + 1)
        image = Image.fromarray(photo[top:top + crop_h, left:left + crop_w]).resize((size, size), Image.BILINEAR)
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        out[slot] = np.asarray(image)
    return out


def _step(teacher, student, colour: np.ndarray, labels: np.ndarray, settings: AdaptSettings, device: str):
    import torch
    import torch.nn.functional as F

    pixels = torch.from_numpy(colour).to(device).permute(0, 3, 1, 2).float()
    # The luma JPEG stores (ITU-R 601), as the index computes it, replicated to three channels.
    luma = (pixels * torch.tensor([0.299, 0.587, 0.114], device=pixels.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    with torch.no_grad():
        target = teacher.features(teacher.normalize(pixels))
    output = student.features(student.normalize(luma.expand(-1, 3, -1, -1)))
    t = settings.temperature
    loss = F.kl_div(F.log_softmax(output.logits / t, 1), F.log_softmax(target.logits / t, 1), log_target=True,
                    reduction="batchmean") * t * t
    loss = loss + settings.descriptor_weight * (
        1 - F.cosine_similarity(output.global_descriptor, target.global_descriptor, dim=1)).mean()
    labelled = torch.from_numpy(labels).to(pixels.device)
    if settings.label_weight and bool((labelled >= 0).any()):
        loss = loss + settings.label_weight * F.cross_entropy(output.logits[labelled >= 0], labelled[labelled >= 0])
    return loss


def _save_atomically(payload: dict, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)
