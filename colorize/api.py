"""Colorizing from Python: decode what is given, run a method, check what it returns."""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Union

import numpy as np
from PIL import Image

from refsearch.network_protocol import Network
from refsearch.errors import InvalidArgumentError
from refsearch.images import ImageSource, decode, is_grayscale, to_luminance
from refsearch.request import SearchRequest

from .base import ColorizeError, Colorizer, ColorizeResult, Reference, ReferenceIndex
from .chroma import DEFAULT_WORKING_SHORT_SIDE, ChromaColorizer
from .hints import Hints, HintSource
from .lab import colorize_gray, rgb_to_lab
from .registry import DEFAULT_METHOD, create_colorizer
from .session import ColorizeSession

ReferenceSource = Union[Reference, ImageSource, tuple]


MAX_SATURATION = 4.0


def colorize(target: ImageSource, references: Sequence[ReferenceSource],
             method: str | Colorizer = DEFAULT_METHOD, *, backbone: Network | None = None,
             saturation: float = 1.0, hints: Hints | Sequence[HintSource] | None = None) -> ColorizeResult:
    """Colorize `target` (a path, PIL image or array; a colour image is used as its luminance) from
    `references`, best first: Reference objects, images, or (image, score) pairs. `method` is a registered
    method's name or a Colorizer. `saturation` scales the result's chroma: below 1 is closer to the true
    colours on average (PSNR), above 1 more vivid, 0 gives the gray input back (docs/colorize.md has the
    trade-off). `hints` are colour points (colorize.Hints, or Hint objects, "X,Y,#RRGGBB" strings or
    {"x", "y", "color"} dicts): each point gets its colour's chroma and it spreads along the photo's
    structure. Raises refsearch.ImageError for an unusable image, InvalidArgumentError for a bad hint, and
    ColorizeError, naming the method, when the method fails or returns something malformed."""
    _check_saturation(saturation)
    started = time.perf_counter()
    hints = Hints.of(hints)
    session = colorize_session(target, references, method, backbone=backbone)
    result = session.render(hints, saturation)
    result.seconds = time.perf_counter() - started
    return result


def colorize_session(target: ImageSource, references: Sequence[ReferenceSource],
                     method: str | Colorizer = DEFAULT_METHOD, *,
                     backbone: Network | None = None) -> ColorizeSession:
    """Run `method` once on `target` and its references (as for `colorize`); the session's `render(hints,
    saturation)` then gives the result with any colour hints in a fraction of a second, and its
    `suggest(x, y)` the colours likely at a point."""
    gray, notes = load_target(target)
    loaded = [load_reference(r, i) for i, r in enumerate(references)]
    if not loaded:
        raise ColorizeError("no references to take colours from: give at least one")
    notes += [f"reference {i + 1} ({r.name or 'image'}) is grayscale: it has no colour to give"
              for i, r in enumerate(loaded) if is_grayscale(r.image)]
    colorizer = method if isinstance(method, Colorizer) else create_colorizer(method, backbone=backbone)
    name = colorizer.name or type(colorizer).__name__
    try:
        if isinstance(colorizer, ChromaColorizer):
            session = colorizer.prepare(gray, loaded)
        else:
            session = ColorizeSession.of_result(gray, _checked(colorizer.colorize(gray, loaded), gray, name,
                                                               len(loaded)))
    except (ColorizeError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise ColorizeError(f"colorize method {name!r} failed: {type(exc).__name__}: {exc}") from exc
    session.references = loaded
    session.notes = notes + session.notes
    return session


def colorize_with_index(index: ReferenceIndex, target: ImageSource, topk: int = 3,
                        method: str | Colorizer | None = None, *, saturation: float = 1.0,
                        hints: Hints | Sequence[HintSource] | None = None,
                        request: SearchRequest | None = None, **search_options) -> ColorizeResult:
    """Retrieve the `topk` best references for `target` from an opened index (search options as for
    its `search`, e.g. rerank=False, or a `request` whose k is the number of references), then colorize
    from them with the index's own network (`method` None: the default method), with `hints` as for
    `colorize`."""
    _check_saturation(saturation)
    started = time.perf_counter()
    hints = Hints.of(hints)
    session = session_with_index(index, target, topk, method, request=request, **search_options)
    result = session.render(hints, saturation)
    result.seconds = time.perf_counter() - started
    return result


def session_with_index(index: ReferenceIndex, target: ImageSource, topk: int = 3,
                       method: str | Colorizer | None = None, *, request: SearchRequest | None = None,
                       **search_options) -> ColorizeSession:
    """`colorize_session` from the `topk` references `index` retrieves for `target` (or `request`'s k)."""
    method = DEFAULT_METHOD if method is None else method
    if request is None and topk < 1:
        raise InvalidArgumentError(f"topk must be at least 1, got {topk}")
    gray, notes = load_target(target)
    response = index.search(gray, topk, request=request, **search_options)
    if not response.results:
        raise ColorizeError(f"the index {index.path} returned no references")
    references = [Reference(_open_reference(r.path), r.score, r.path) for r in response.results]
    session = colorize_session(gray, references, method, backbone=index.network)
    session.notes = notes + [f"retrieval: {n}" for n in response.notes] + session.notes
    return session


def _check_saturation(saturation: float) -> None:
    if not 0.0 <= saturation <= MAX_SATURATION:
        raise InvalidArgumentError(f"saturation must be between 0 and {MAX_SATURATION:g}, got {saturation:g}")


def load_target(source: ImageSource) -> tuple[Image.Image, list[str]]:
    """The target as a mode L image, and a note when it had colour."""
    image = decode(source).image
    if is_grayscale(image):
        return to_luminance(image), []
    return to_luminance(image), ["the input has colour; it is colorized from its luminance"]


def load_reference(source: ReferenceSource, position: int) -> Reference:
    if isinstance(source, Reference):
        return Reference(decode(source.image).image, source.score, source.name)
    score = None
    if isinstance(source, tuple):
        source, score = source
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else f"reference {position + 1}"
    return Reference(_open_reference(source), score, name)


def _open_reference(source: ImageSource) -> Image.Image:
    # Methods see references at working resolution, so large JPEGs can be decoded reduced.
    return decode(source, min_short_side=2 * DEFAULT_WORKING_SHORT_SIDE).image


def _checked(result: object, gray: Image.Image, name: str, n_references: int) -> ColorizeResult:
    if not isinstance(result, ColorizeResult):
        raise ColorizeError(f"colorize method {name!r} returned a {type(result).__name__}, "
                            "not a ColorizeResult")
    image = result.image
    if not isinstance(image, Image.Image) or image.size != gray.size:
        size = image.size if isinstance(image, Image.Image) else type(image).__name__
        raise ColorizeError(f"colorize method {name!r} returned an image of size {size}, "
                            f"expected {gray.size}")
    shape = (gray.size[1], gray.size[0])
    for field_name in ("confidence", "source"):
        array = np.asarray(getattr(result, field_name))
        if array.shape != shape:
            raise ColorizeError(f"colorize method {name!r} returned {field_name} of shape {array.shape}, "
                                f"expected {shape}")
    source = np.asarray(result.source)
    if source.size and (source.min() < -1 or source.max() >= n_references):
        raise ColorizeError(f"colorize method {name!r} named a reference that does not exist")
    image = image if image.mode == "RGB" else image.convert("RGB")
    if not np.array_equal(np.asarray(image.convert("L")), np.asarray(gray)):
        # A method that changed the target's tones keeps only its colours: every result keeps the target's L.
        chroma = rgb_to_lab(np.asarray(image))[..., 1:]
        image = Image.fromarray(colorize_gray(np.asarray(gray), chroma), "RGB")
        result.notes.append(f"method {name!r} changed the input's luminance; its colours were put back on "
                            "the original luminance")
    result.image = image
    result.confidence = np.clip(np.asarray(result.confidence, np.float32), 0.0, 1.0)
    return result
