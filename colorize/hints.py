"""Colour hints: points of the input photo, each with the colour it should have there (after the user-guided
colorization of Zhang et al. 2017). This module only says what a valid set of points is, and reads and
writes it (`X,Y,#RRGGBB` on the command line, JSON in files and over HTTP); colorize.propagation spreads
them over the photo and colorize.session applies them.

The JSON form is an object `{"width": W, "height": H, "hints": [{"x": X, "y": Y, "color": "#rrggbb"}, ...]}`
(width and height, of the photo the points were placed on, may be left out), or the bare list of points.
The `--json` output of `refsearch colorize` for one photo is read too: its one result carries the same
fields."""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from refsearch.errors import InvalidArgumentError

# Points beyond a few hundred add nothing a person could place by hand, and each costs a sparse solve.
MAX_HINTS = 256
# A hints file is a few kilobytes at MAX_HINTS points; anything much larger is not one.
MAX_HINTS_FILE_BYTES = 1 << 20
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
_HINT_TEXT = "X,Y,#RRGGBB (pixel column and row from the top left, and a colour), like 120,80,#c0302a"


@dataclass(frozen=True)
class Hint:
    """A point of the input photo, pixel column `x` and row `y` from its top left corner, and the colour
    `color` ("#rrggbb", sRGB) it should have there. Only the colour's chroma is applied: the photo keeps
    its gray level at the point."""

    x: int
    y: int
    color: str

    def __post_init__(self) -> None:
        for axis in ("x", "y"):
            value = getattr(self, axis)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgumentError(f"a hint's {axis} must be a whole pixel number, got {value!r}")
            if value < 0:
                raise InvalidArgumentError(f"a hint's {axis} must be 0 or more, got {value}")
        if not isinstance(self.color, str) or not _COLOUR.fullmatch(self.color):
            raise InvalidArgumentError(f"a hint's colour must be #RRGGBB (six hex digits), got "
                                       f"{self.color!r}")
        object.__setattr__(self, "color", self.color.lower())

    @property
    def rgb(self) -> tuple[int, int, int]:
        return tuple(int(self.color[i:i + 2], 16) for i in (1, 3, 5))

    @classmethod
    def parse(cls, text: str) -> Hint:
        """From `X,Y,#RRGGBB`."""
        parts = [part.strip() for part in str(text).split(",")]
        if len(parts) != 3:
            raise InvalidArgumentError(f"hint {text!r} is not {_HINT_TEXT}")
        x, y, color = parts
        if not (x.isdigit() and y.isdigit()):
            raise InvalidArgumentError(f"hint {text!r}: X and Y must be whole pixel numbers, 0 or more "
                                       f"({_HINT_TEXT})")
        return cls(int(x), int(y), color)

    @classmethod
    def from_dict(cls, item: Any) -> Hint:
        if not isinstance(item, dict) or set(item) != {"x", "y", "color"}:
            raise InvalidArgumentError(f"a hint must be an object with x, y and color, got {_short(item)}")
        return cls(_whole(item["x"], "x"), _whole(item["y"], "y"), item["color"])

    def to_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "color": self.color}

    def __str__(self) -> str:
        return f"{self.x},{self.y},{self.color}"


HintSource = Hint | str | dict


@dataclass(frozen=True)
class Hints:
    """The points of one photo, in the order given (where two points fall on the same working pixel the
    later one wins), at most MAX_HINTS; `size` is the (width, height) of the photo they were placed on,
    when known."""

    points: tuple[Hint, ...] = ()
    size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple(self.points))
        if len(self.points) > MAX_HINTS:
            raise InvalidArgumentError(f"{len(self.points)} colour hints; at most {MAX_HINTS} are taken")
        if self.size is not None:
            width, height = self.size
            object.__setattr__(self, "size", (_whole(width, "width"), _whole(height, "height")))
            self.check(self.size)

    def __len__(self) -> int:
        return len(self.points)

    def __iter__(self) -> Iterator[Hint]:
        return iter(self.points)

    def __bool__(self) -> bool:
        return bool(self.points)

    @classmethod
    def of(cls, value: Hints | Iterable[HintSource] | None) -> Hints:
        """Hints from Hints, None, or points given as Hint objects, `X,Y,#RRGGBB` strings or dicts."""
        if value is None:
            return cls()
        if isinstance(value, Hints):
            return value
        if isinstance(value, (str, dict)):
            raise InvalidArgumentError("give the hints as a list of points (Hint, 'X,Y,#RRGGBB' or "
                                       "{'x', 'y', 'color'}), or read a JSON file with Hints.load")
        points = list(value)
        if len(points) > MAX_HINTS:
            raise InvalidArgumentError(f"{len(points)} colour hints; at most {MAX_HINTS} are taken")
        return cls(tuple(_hint(point) for point in points))

    @classmethod
    def from_json(cls, data: Any) -> Hints:
        """From decoded JSON: a list of points, an object with a `hints` list (and optionally `width` and
        `height`), or `refsearch colorize --json` output for one photo."""
        holder = data
        if isinstance(data, dict) and "hints" not in data and isinstance(data.get("done"), list):
            done = data["done"]
            if len(done) != 1:
                raise InvalidArgumentError(f"this colorize output covers {len(done)} photos; hints are the "
                                           "points of one photo")
            holder = done[0]
        if isinstance(holder, list):
            points, size = holder, None
        elif isinstance(holder, dict) and isinstance(holder.get("hints"), list):
            points = holder["hints"]
            size = (holder["width"], holder["height"]) if "width" in holder and "height" in holder else None
        else:
            raise InvalidArgumentError(f"not colour hints: expected a list of points or an object with a "
                                       f"'hints' list, got {_short(holder)}")
        if len(points) > MAX_HINTS:
            raise InvalidArgumentError(f"{len(points)} colour hints; at most {MAX_HINTS} are taken")
        return cls(tuple(_numbered(Hint.from_dict, item, number) for number, item in enumerate(points)), size)

    @classmethod
    def loads(cls, text: str | bytes) -> Hints:
        if len(text) > MAX_HINTS_FILE_BYTES:
            raise InvalidArgumentError(f"the hints are {len(text)} bytes of JSON; at most "
                                       f"{MAX_HINTS_FILE_BYTES} are read")
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidArgumentError(f"the hints are not valid JSON ({exc})") from None
        return cls.from_json(data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Hints:
        """From a JSON file; a file that is not hints raises InvalidArgumentError naming it."""
        with open(path, "rb") as file:
            text = file.read(MAX_HINTS_FILE_BYTES + 1)
        try:
            return cls.loads(text)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"{os.fspath(path)}: {exc.message}") from None

    def with_size(self, size: tuple[int, int]) -> Hints:
        return Hints(self.points, size)

    def check(self, size: tuple[int, int]) -> None:
        """Raise InvalidArgumentError unless every point lies in a photo of `size` (width, height), and the
        photo the points were placed on, when known, had that size."""
        width, height = size
        if self.size is not None and self.size != (width, height):
            placed = f"{self.size[0]}x{self.size[1]}"
            raise InvalidArgumentError(f"the hints were placed on a {placed} photo; this one is "
                                       f"{width}x{height}")
        for point in self.points:
            if point.x >= width or point.y >= height:
                raise InvalidArgumentError(f"hint {point} lies outside the {width}x{height} photo (x from 0 "
                                           f"to {width - 1}, y from 0 to {height - 1})")

    def to_dict(self) -> dict:
        data: dict = {}
        if self.size is not None:
            data["width"], data["height"] = self.size
        data["hints"] = [point.to_dict() for point in self.points]
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def _hint(point: HintSource) -> Hint:
    if isinstance(point, Hint):
        return point
    if isinstance(point, str):
        return Hint.parse(point)
    return Hint.from_dict(point)


def _numbered(make, item: Any, number: int) -> Hint:
    try:
        return make(item)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"hint {number + 1}: {exc.message}") from None


def _whole(value: Any, name: str) -> int:
    """An integer, or a float with no fraction (JSON writers may add .0)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be a whole pixel number, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
