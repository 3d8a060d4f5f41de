"""Whether two images are copies of one picture, decided from their pixels.

Semantic similarity cannot tell an edited copy from a photo of a look-alike (two dog breeds, a leopard
and a cheetah); pixels can. Both files are read again (the index stores nothing more for this), their
luminance decoded with the short side at `WORK_SIDE`, and ORB keypoints matched between them (Lowe's
ratio test, each keypoint used once). RANSAC fits a similarity transform (scale, rotation, shift) to the
matches; it must be kept by `MIN_INLIERS` matches, keep its scale within `MAX_SCALE`, and make each
image overlap at least `MIN_OVERLAP` of the other. That aligns crops, resizes and small rotations.

The aligned luminance is then compared on a grid of at most `COMPARE_SIDE` pixels on the short side,
no finer than either image's own pixels, so that a copy downsized to 30% is compared at its resolution.
A gray-level line (gain and offset) is fitted between the two, so grayscale, brightness and contrast
changes cost nothing; pixels far off the line (beyond three robust standard deviations: a caption, a
logo, clipped highlights) are set aside, up to half the overlap. Two correlations over the rest must
reach `MIN_CORRELATION`: of the luminance itself, and of its detail (the luminance less its blur), so
that two smooth photos laid out alike (sky over land) do not pass on their broad shading alone.

Files with the same digest are copies without being decoded. A file that cannot be read leaves its
pairs unverified, and the check says which file and why.
"""
from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..images import ImageError, decode
from ..store import ImageRecord
from .results import CopyCheck

WORK_SIDE = 256  # short side at which keypoints are found and transforms estimated
COMPARE_SIDE = 96  # short side of the grid the luminance is compared on, at most
SMALLEST_COMPARISON = 24  # a comparison grid smaller than this says too little
KEYPOINTS = 1000
RATIO = 0.85  # Lowe's ratio test: best match distance below this share of the second best
RANSAC_PIXELS = 4.0  # at WORK_SIDE
MIN_INLIERS = 8
MAX_SCALE = 3.0
MIN_OVERLAP = 0.3
MIN_CORRELATION = 0.6
MIN_AGREEING = 0.5  # the share of the overlap left once overlaid or clipped pixels are set aside
# Gray levels (of 255) within which two pixels always agree: in the luminance, where recompression
# ends and an overlay or clipping begins; in the detail, the noise of recompression.
OVERLAY_LEVELS = 16.0
NOISE_LEVELS = 2.0
DETAIL_SIGMA = 2.0  # at the comparison grid: the detail is the luminance less this Gaussian blur
CACHE_IMAGES = 512  # decoded images kept between pairs (about 130 KB each)
CHUNK = 64  # pairs per task handed to a worker thread


@dataclass(frozen=True)
class _Features:
    image: np.ndarray  # uint8 luminance, short side WORK_SIDE
    points: np.ndarray  # (n, 2) float32 keypoint positions
    descriptors: np.ndarray | None  # (n, 32) uint8 ORB descriptors
    short_side: int  # of the image as stored


class CopyVerifier:
    """Checks pairs of indexed images (first, second) for being copies of one picture; decoded images
    are kept in a small cache, so pairs sharing an image decode it once when they come close together."""

    def __init__(self, workers: int | None = None):
        import cv2  # imported here: opencv takes a fifth of a second to load, and only this needs it

        self._cv2 = cv2
        self.workers = max(1, workers if workers is not None else min(4, os.cpu_count() or 1))
        # per verifier (a cache on the class would outlive it); thread-safe, and an unreadable file's
        # ImageError is kept like any result, so it is read once
        self._features = lru_cache(maxsize=CACHE_IMAGES)(self._read_features)
        self._local = threading.local()

    def check_many(self, pairs: Sequence[tuple[ImageRecord, ImageRecord]],
                   on_done: Callable[[int], None] | None = None) -> list[CopyCheck]:
        """`check` for every pair, in order; `on_done(n)` is told of each chunk of n pairs finished."""
        chunks = [pairs[start:start + CHUNK] for start in range(0, len(pairs), CHUNK)]

        def run(chunk):
            checks = [self.check(first, second) for first, second in chunk]
            if on_done:
                on_done(len(chunk))
            return checks

        if self.workers == 1 or len(chunks) <= 1:
            results = map(run, chunks)
            return [check for chunk in results for check in chunk]
        with ThreadPoolExecutor(self.workers) as pool:
            return [check for chunk in pool.map(run, chunks) for check in chunk]

    def check(self, first: ImageRecord, second: ImageRecord) -> CopyCheck:
        """Whether `second` is a copy of `first` (or the other way round), and why."""
        unverified = _unverified(first.id, second.id)
        if first.digest and first.digest == second.digest:
            return CopyCheck(first.id, second.id, True, "identical files", scale=1.0, rotation=0.0,
                             overlap_first=1.0, overlap_second=1.0, luminance=1.0, detail=1.0, agreeing=1.0)
        features = []
        for record in (first, second):
            found = self._features(record.path)
            if isinstance(found, ImageError):
                return unverified(f"cannot read {record.path}: {found.reason}", unreadable=True)
            features.append(found)
        a, b = features
        if a.descriptors is None or b.descriptors is None or min(len(a.points), len(b.points)) < MIN_INLIERS:
            return unverified("too few keypoints to align (a flat or tiny image)")
        matches = self._matches(a, b)
        if len(matches) < MIN_INLIERS:
            return unverified(f"only {len(matches)} keypoints match (at least {MIN_INLIERS} needed)",
                              matches=len(matches))
        fit = self._transform(a.points[matches[:, 0]], b.points[matches[:, 1]])
        if fit is None:
            return unverified("no alignment of the keypoints keeps a plausible scale", matches=len(matches))
        matrix, inliers = fit
        work_scale = float(math.hypot(matrix[0, 0], matrix[1, 0]))
        # as stored: the second's size for the same content, relative to the first's
        scale = b.short_side / (work_scale * a.short_side)
        rotation = round(math.degrees(math.atan2(matrix[1, 0], matrix[0, 0])), 2) + 0.0  # no -0.0
        aligned = {"matches": len(matches), "inliers": inliers, "scale": round(scale, 4),
                   "rotation": rotation}
        if inliers < MIN_INLIERS:
            return unverified(f"only {inliers} of {len(matches)} keypoint matches agree on one alignment "
                              f"(at least {MIN_INLIERS} needed)", **aligned)
        compared = self._compare(a, b, matrix, work_scale)
        if isinstance(compared, str):
            return unverified(compared, **aligned)
        overlap_first, overlap_second, luminance, detail, agreeing = compared
        measured = {**aligned, "overlap_first": round(overlap_first, 3),
                    "overlap_second": round(overlap_second, 3), "luminance": round(luminance, 4),
                    "detail": round(detail, 4), "agreeing": round(agreeing, 3)}
        how = (f"{inliers} of {len(matches)} keypoint matches align them (scale {scale:.2f}, rotation "
               f"{round(rotation, 1) + 0.0:+.1f}°, overlap {overlap_first:.0%} of the first, "
               f"{overlap_second:.0%} of the second)")
        if min(overlap_first, overlap_second) < MIN_OVERLAP:
            return unverified(f"{how}, too little overlap (at least {MIN_OVERLAP:.0%} of each)", **measured)
        agreement = (f"luminance correlation {luminance:.3f}, detail correlation {detail:.3f} over "
                     f"{agreeing:.0%} of the overlap")
        if agreeing < MIN_AGREEING or min(luminance, detail) < MIN_CORRELATION:
            return unverified(f"{how}, but the luminance disagrees: {agreement} (at least {MIN_CORRELATION} "
                              f"over {MIN_AGREEING:.0%} needed)", **measured)
        return CopyCheck(first.id, second.id, True, f"{how}; {agreement}", **measured)

    # -- the steps -----------------------------------------------------------------------------
    def _read_features(self, path: str) -> _Features | ImageError:
        try:
            return self._describe(path)
        except ImageError as exc:
            return exc

    def _describe(self, path: str) -> _Features:
        cv2 = self._cv2
        decoded = decode(path, min_short_side=WORK_SIDE, luminance=True)
        pixels = np.asarray(decoded.image)
        height, width = pixels.shape
        factor = WORK_SIDE / min(height, width)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        keypoints, descriptors = self._detector().detectAndCompute(pixels, None)
        points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
        return _Features(pixels, points, descriptors, min(decoded.original_size))

    def _detector(self):
        # one ORB detector and matcher per thread: OpenCV's objects are not meant to be shared
        local = self._local
        if not hasattr(local, "detector"):
            local.detector = self._cv2.ORB_create(nfeatures=KEYPOINTS)
            local.matcher = self._cv2.BFMatcher(self._cv2.NORM_HAMMING)
        return local.detector

    def _matches(self, a: _Features, b: _Features) -> np.ndarray:
        """(n, 2) indices (in a, in b) of the keypoints that pass the ratio test, each used once."""
        self._detector()
        best: dict[int, tuple[float, int]] = {}
        for pair in self._local.matcher.knnMatch(b.descriptors, a.descriptors, k=2):
            if len(pair) == 2 and pair[0].distance < RATIO * pair[1].distance:
                match = pair[0]
                if match.trainIdx not in best or match.distance < best[match.trainIdx][0]:
                    best[match.trainIdx] = (match.distance, match.queryIdx)
        return np.array([(i, j) for i, (_, j) in best.items()], np.int64).reshape(-1, 2)

    def _transform(self, points_a: np.ndarray, points_b: np.ndarray) -> tuple[np.ndarray, int] | None:
        """A similarity transform from b's pixels to a's, and how many matches it keeps. A fit whose scale
        is implausible (matches collapsing onto one spot) is set aside with its matches, twice at most."""
        cv2 = self._cv2
        for _ in range(3):
            if len(points_a) < MIN_INLIERS:
                return None
            matrix, kept = cv2.estimateAffinePartial2D(points_b, points_a, method=cv2.RANSAC,
                                                       ransacReprojThreshold=RANSAC_PIXELS, maxIters=2000,
                                                       confidence=0.995)
            if matrix is None:
                return None
            kept = kept.ravel().astype(bool)
            if 1 / MAX_SCALE <= math.hypot(matrix[0, 0], matrix[1, 0]) <= MAX_SCALE:
                return matrix, int(kept.sum())
            points_a, points_b = points_a[~kept], points_b[~kept]
        return None

    def _compare(self, a: _Features, b: _Features, matrix: np.ndarray,
                 scale: float) -> tuple[float, float, float, float, float] | str:
        """(overlap of a, overlap of b, luminance correlation, detail correlation, share agreeing) of b
        laid onto a, or why they cannot be compared."""
        cv2 = self._cv2
        # The grid: no finer than either image's own pixels, as seen in a's frame.
        side = min(COMPARE_SIDE, a.short_side, b.short_side / scale)
        if side < SMALLEST_COMPARISON:
            return f"too small to compare ({side:.0f} pixels on the short side where they overlap)"
        factor = side / WORK_SIDE
        height, width = a.image.shape
        grid = (max(1, round(width * factor)), max(1, round(height * factor)))
        first = cv2.resize(a.image, grid, interpolation=cv2.INTER_AREA).astype(np.float32)
        # b is brought to the grid's pixel size first, so that warping it needs no further smoothing
        shrink = min(1.0, factor * scale)
        b_height, b_width = b.image.shape
        b_size = (max(1, round(b_width * shrink)), max(1, round(b_height * shrink)))
        second = cv2.resize(b.image, b_size, interpolation=cv2.INTER_AREA).astype(np.float32)
        onto = factor * matrix @ np.diag([b_width / b_size[0], b_height / b_size[1], 1.0])
        laid = cv2.warpAffine(second, onto, grid, flags=cv2.INTER_LINEAR)
        covered = cv2.warpAffine(np.ones(second.shape, np.uint8), onto, grid, flags=cv2.INTER_NEAREST) > 0
        overlap_first = float(covered.mean())
        overlap_second = float(covered.sum() / (b_width * b_height * (factor * scale) ** 2))
        inside = cv2.erode(covered.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        if inside.sum() < SMALLEST_COMPARISON ** 2 / 2:
            return f"the alignment overlaps only {overlap_first:.0%} of the first image"
        luminance, kept, line = _robust_correlation(first[inside], laid[inside], OVERLAY_LEVELS)
        # Before blurring it, the second's pixels outside the overlap or set aside above (an overlay) are
        # filled from the first along the fitted line, so the blur spreads neither edge nor overlay.
        compared = np.zeros(covered.shape, bool)
        compared[inside] = kept
        filled = np.where(compared, laid, line[0] * first + line[1]).astype(np.float32)
        detail_first = first - cv2.GaussianBlur(first, (0, 0), DETAIL_SIGMA)
        detail_second = filled - cv2.GaussianBlur(filled, (0, 0), DETAIL_SIGMA)
        detail, _, _ = _robust_correlation(detail_first[compared], detail_second[compared], NOISE_LEVELS)
        agreeing = float(kept.mean())
        return (min(1.0, overlap_first), min(1.0, overlap_second), luminance, detail, agreeing)


def _robust_correlation(x: np.ndarray, y: np.ndarray, floor: float,
                        rounds: int = 3) -> tuple[float, np.ndarray, tuple[float, float]]:
    """The correlation of x and y over the pixels near the line fitted between them (refitted `rounds`
    times, setting aside those beyond three robust standard deviations, or beyond `floor` gray levels
    where the two agree closer than that), which pixels were kept, and the line (gain, offset)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    kept = np.ones(len(x), bool)
    line = (1.0, 0.0)
    for _ in range(rounds):
        if kept.sum() < 16 or x[kept].std() < 1e-6:
            return 0.0, kept, line
        line = tuple(np.polyfit(x[kept], y[kept], 1))
        residual = y - (line[0] * x + line[1])
        spread = 1.4826 * np.median(np.abs(residual[kept] - np.median(residual[kept])))
        kept = np.abs(residual) <= max(3 * spread, floor)
    if kept.sum() < 16 or x[kept].std() < 1e-6 or y[kept].std() < 1e-6:
        return 0.0, kept, line
    return float(np.corrcoef(x[kept], y[kept])[0, 1]), kept, line


def _unverified(first: int, second: int):
    def make(reason: str, unreadable: bool = False, **measured) -> CopyCheck:
        return CopyCheck(first, second, False, reason, unreadable=unreadable, **measured)

    return make
