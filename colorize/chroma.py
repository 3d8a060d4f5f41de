"""The common shape of a colorizer that predicts chroma at a working resolution: it sees the target and
its references reduced (short side 256 by default) and in Lab; the result gets the chroma upsampled onto
the target's own full-size gray levels."""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .base import ColorizeError, Colorizer, ColorizeResult, Reference
from .hints import Hints
from .lab import gray_lightness, rgb_to_lab
from .prediction import ChromaPrediction
from .propagation import HintSettings
from .resample import working_size
from .session import ColorizeSession

DEFAULT_WORKING_SHORT_SIDE = 256


@dataclass(frozen=True)
class WorkingImage:
    """An image at working resolution: its luma (h, w) uint8 and its Lab (h, w, 3) float32."""

    luma: np.ndarray
    lab: np.ndarray
    score: float | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.luma.shape

    @classmethod
    def of_gray(cls, gray: Image.Image, size: tuple[int, int]) -> WorkingImage:
        luma = np.asarray(_resized(gray, size))
        lab = np.zeros(luma.shape + (3,), np.float32)
        lab[..., 0] = gray_lightness(luma)
        return cls(luma, lab)

    @classmethod
    def of_reference(cls, reference: Reference, short_side: int) -> WorkingImage:
        rgb = _resized(reference.image.convert("RGB"), working_size(reference.image.size, short_side))
        return cls(np.asarray(rgb.convert("L")), rgb_to_lab(np.asarray(rgb)), reference.score)


class ChromaColorizer(Colorizer):
    """A method that predicts chroma at working resolution; the result, and colour hints on it, are put
    together by colorize.session."""

    def __init__(self, working_short_side: int = DEFAULT_WORKING_SHORT_SIDE,
                 hint_settings: HintSettings | None = None):
        self.working_short_side = working_short_side
        self.hint_settings = hint_settings or HintSettings()

    @abstractmethod
    def predict_chroma(self, target: WorkingImage, references: list[WorkingImage]) -> ChromaPrediction:
        ...

    def colorize(self, target: Image.Image, references: Sequence[Reference],
                 hints: Hints | None = None) -> ColorizeResult:
        return self.prepare(target, references).render(hints)

    def prepare(self, target: Image.Image, references: Sequence[Reference]) -> ColorizeSession:
        """Predict the chroma once; the session renders it, with any colour hints."""
        if not references:
            raise ColorizeError(f"colorize method {self.name!r} needs at least one reference")
        work_target = WorkingImage.of_gray(target, working_size(target.size, self.working_short_side))
        work_references = [WorkingImage.of_reference(r, self.working_short_side) for r in references]
        prediction = self.predict_chroma(work_target, work_references)
        _check(prediction, work_target.shape, len(references), self.name)
        session = ColorizeSession.of_prediction(target, work_target.luma, prediction, self.name,
                                                self.hint_settings)
        session.references = list(references)
        return session


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == size else image.resize(size, Image.BILINEAR, reducing_gap=3.0)


def _check(prediction: ChromaPrediction, shape: tuple[int, int], n_references: int, name: str) -> None:
    expected = {"ab": shape + (2,), "confidence": shape, "source": shape}
    for field_name, want in expected.items():
        got = getattr(prediction, field_name).shape
        if got != want:
            raise ColorizeError(f"colorize method {name!r} predicted {field_name} of shape {got}, "
                                f"expected {want}")
    if prediction.source.size and (prediction.source.min() < -1 or prediction.source.max() >= n_references):
        raise ColorizeError(f"colorize method {name!r} named a reference that does not exist")
