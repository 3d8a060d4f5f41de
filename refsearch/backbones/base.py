"""What every backbone gives for a batch of luminance images."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import BackboneError
from .inference import InferenceSettings, inference_settings

# An adapted weights file: {"format", "backbone", "base_fingerprint", "input_size", "state" (the tensors
# that differ from the base weights, named as in those), "training" (how)}.
ADAPTED_FORMAT = "refsearch-adapted-weights/1"


@dataclass
class BackboneOutput:
    """Per image: 1000-class logits, a global descriptor, a grid x grid map of cell descriptors
    and, when asked for, the intermediate feature maps from fine to coarse."""

    logits: torch.Tensor
    global_descriptor: torch.Tensor
    cells: torch.Tensor
    feature_maps: list[torch.Tensor] = field(default_factory=list)


@contextmanager
def _single_threaded() -> Iterator[None]:
    """Run a CPU forward pass on one thread, then put the calling thread's count back. For these small
    networks one pass spread over several threads is slower (on the 2-core development machine four times
    slower at batch 1) than one thread per pass with passes side by side (docs/benchmarks.md). With
    torch's OpenMP backend the count is per calling thread, so passes in other threads are unaffected."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Backbone(nn.Module):
    """An ImageNet CNN that sees an image as its luminance replicated to three channels.

    Subclasses set `name`, `global_dim`, `cell_dim`, implement `normalize` (uint8-range input to the
    network's input range) and `features` (normalized input to a BackboneOutput).
    """

    name: str = ""
    # The submodule whose state dict weights files hold (and adapted weights files, in part).
    weights_module: str = "net"
    # Weights known by name (besides files), which an index built with any of them finds again by itself.
    named_weights: tuple[str, ...] = ()
    input_size: int = 224
    grid: int = 7
    global_dim: int = 0
    cell_dim: int = 0

    def __init__(self, input_size: int = 0) -> None:
        super().__init__()
        self.fingerprint = ""
        if input_size:
            self.input_size = input_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def features(self, x: torch.Tensor, feature_maps: bool = False) -> BackboneOutput:
        raise NotImplementedError

    # How passes run: float32, NCHW, plain copies until `run_on` sets what suits its device.
    inference: InferenceSettings = InferenceSettings(autocast_dtype=None, channels_last=False, pinned_transfer=False)

    def run_on(self, device: torch.device, precision: str = "auto") -> Backbone:
        """Move to `device` for inference with the settings that suit it (see `inference_settings`)."""
        self.inference = inference_settings(device.type, precision)
        self.to(device)
        if self.inference.channels_last:
            self.to(memory_format=torch.channels_last)
        return self.eval()

    @torch.inference_mode()
    def extract(self, luminance: np.ndarray, feature_maps: bool = False) -> BackboneOutput:
        """Run on a (B, H, W) uint8 batch of luminance images (any H, W; `input_size` for retrieval).
        The batch crosses to the device as uint8, a quarter of the bytes of the float input it becomes."""
        device, settings = self.device, self.inference
        # A read-only array (np.asarray of a PIL image is one) is copied: torch cannot share it safely.
        pixels = torch.from_numpy(np.require(luminance, requirements=("C_CONTIGUOUS", "WRITEABLE")))
        pixels = pixels.pin_memory().to(device, non_blocking=True) if settings.pinned_transfer else pixels.to(device)
        x = self.normalize(pixels.unsqueeze(1).expand(-1, 3, -1, -1).float())
        if settings.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = (torch.autocast(device.type, dtype=settings.autocast_dtype) if settings.autocast_dtype
                    else nullcontext())
        with _single_threaded() if device.type == "cpu" else nullcontext(), autocast:
            return self.features(x, feature_maps=feature_maps)

    def base_weights(self) -> Path:
        """The ImageNet weights an adapted weights file (see refsearch.adapt) is applied on top of."""
        raise BackboneError(f"backbone {self.name} has no base weights for adapted weights to build on")

    def adapted_parameters(self) -> list[str]:
        """The parameters `refsearch adapt` trains besides the batch-norm ones: the early layers, where
        colour enters the network."""
        raise BackboneError(f"backbone {self.name} cannot be adapted", "adapt efficientnet-lite2 or vgg19")

    def load_state(self, module: nn.Module, weights: str | Path) -> None:
        """Load `module` (a part of this backbone) from a state dict file, or from an adapted weights file
        applied on top of `base_weights()`; the fingerprint is that of the weights loaded."""
        payload = _load(Path(weights))
        state = _tensors(payload, weights)
        adapted = payload if is_adapted(payload) else None
        if adapted is not None:
            if adapted["backbone"] != self.name:
                raise BackboneError(f"{weights} adapts backbone {adapted['backbone']}, not {self.name}")
            base = load_state_dict(self.base_weights())
            if state_fingerprint(base) != adapted["base_fingerprint"]:
                raise BackboneError(f"{weights} was adapted from other {self.name} weights than "
                                    f"{self.base_weights()}")
            state = {**base, **state}
        missing, unexpected = _key_mismatch(module, state)
        if missing or unexpected:
            raise BackboneError(
                f"{weights} does not hold {self.name} weights: {len(missing)} missing keys "
                f"(e.g. {missing[:2]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:2]})")
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise BackboneError(f"{weights} does not fit {self.name}: {str(exc).splitlines()[0]}") from None
        self.fingerprint = state_fingerprint(state)


def _load(path: Path):
    if not path.is_file():
        raise BackboneError(f"weights file {path} not found", "check the --weights path")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BackboneError(f"{path} is not a PyTorch state dict ({type(exc).__name__}: {exc})") from None


def is_adapted(payload) -> bool:
    """Whether a loaded weights file is an adapted one (written by `refsearch adapt`)."""
    return isinstance(payload, dict) and payload.get("format") == ADAPTED_FORMAT


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a state dict file (also under a "state_dict" key), or of an adapted weights file."""
    return _tensors(_load(Path(path)), path)


def _tensors(payload, path) -> dict[str, torch.Tensor]:
    if is_adapted(payload):
        payload = payload["state"]
    elif isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise BackboneError(f"{path} is not a PyTorch state dict of tensors")
    return payload


def _key_mismatch(module: nn.Module, state: dict) -> tuple[list[str], list[str]]:
    expected = set(module.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """A short id of a set of weights: their names, shapes and sums, so an index knows which weights built it."""
    digest = hashlib.sha1()
    for name in sorted(state):
        tensor = state[name]
        digest.update(f"{name}{tuple(tensor.shape)}{float(tensor.double().sum()):.6e}".encode())
    return digest.hexdigest()[:16]
