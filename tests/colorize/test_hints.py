"""Colour hints as data: what a valid point is, and reading and writing them (`X,Y,#RRGGBB`, JSON)."""
import json

import pytest

from colorize import MAX_HINTS, Hint, Hints
from refsearch.errors import InvalidArgumentError


def test_a_hint_from_text_and_back():
    hint = Hint.parse(" 12, 34 ,#A0b0C0")
    assert (hint.x, hint.y, hint.color, hint.rgb) == (12, 34, "#a0b0c0", (160, 176, 192))
    assert str(hint) == "12,34,#a0b0c0" and Hint.parse(str(hint)) == hint


@pytest.mark.parametrize("text, message", [
    ("1,2", "is not X,Y,#RRGGBB"), ("1,2,#ff0000,4", "is not X,Y,#RRGGBB"), ("", "is not X,Y,#RRGGBB"),
    ("a,2,#ff0000", "whole pixel numbers"), ("-1,2,#ff0000", "whole pixel numbers"),
    ("1.5,2,#ff0000", "whole pixel numbers"), ("1,2,#fff", "six hex digits"), ("1,2,red", "six hex digits"),
    ("1,2,#gg0000", "six hex digits"),
])
def test_malformed_hint_text_is_refused_with_a_reason(text, message):
    with pytest.raises(InvalidArgumentError, match=message):
        Hint.parse(text)


def test_hints_as_json_round_trip(tmp_path):
    hints = Hints((Hint(3, 4, "#102030"), Hint(0, 9, "#FFFFFF")), size=(40, 30))
    assert hints.to_dict() == {"width": 40, "height": 30, "hints": [{"x": 3, "y": 4, "color": "#102030"},
                                                                     {"x": 0, "y": 9, "color": "#ffffff"}]}
    assert Hints.loads(hints.dumps()) == hints
    path = tmp_path / "points.json"
    path.write_text(hints.dumps())
    assert Hints.load(path) == hints
    # a bare list of points, JSON floats without a fraction, and a colorize --json output of one photo
    assert Hints.loads('[{"x": 3.0, "y": 4, "color": "#102030"}]').points == hints.points[:1]
    output = {"done": [{"input": "a.jpg", "width": 40, "height": 30, "hints": hints.to_dict()["hints"]}],
              "failed": []}
    assert Hints.from_json(output) == hints


def test_points_of_many_kinds():
    hints = Hints.of([Hint(1, 1, "#000000"), "2,2,#111111", {"x": 3, "y": 3, "color": "#222222"}])
    assert [str(h) for h in hints] == ["1,1,#000000", "2,2,#111111", "3,3,#222222"]
    assert Hints.of(None) == Hints() and not Hints() and len(hints) == 3
    with pytest.raises(InvalidArgumentError, match="list of points"):
        Hints.of("1,1,#000000")


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"), ("\"a\"", "not colour hints"), ('{"points": []}', "not colour hints"),
    ('[{"x": 1, "y": 2}]', "hint 1: a hint must be an object with x, y and color"),
    ('[{"x": 1, "y": 2, "color": "#ff0000", "size": 3}]', "hint 1: a hint must be an object"),
    ('[{"x": 1, "y": 2, "color": "#ff0000"}, {"x": "1", "y": 2, "color": "#ff0000"}]', "hint 2: x must be"),
    ('[{"x": true, "y": 2, "color": "#ff0000"}]', "x must be a whole pixel number"),
    ('[{"x": 1.5, "y": 2, "color": "#ff0000"}]', "x must be a whole pixel number"),
    ('[{"x": 1, "y": 2, "color": 255}]', "six hex digits"),
    ('{"width": 10, "height": 10, "hints": [{"x": 10, "y": 2, "color": "#ff0000"}]}', "outside the 10x10"),
    ('{"done": [{"hints": []}, {"hints": []}]}', "covers 2 photos"),
])
def test_malformed_json_is_one_clear_error(text, message):
    with pytest.raises(InvalidArgumentError, match=message):
        Hints.loads(text)


def test_thousands_of_points_are_refused_not_processed():
    points = [{"x": i % 100, "y": i // 100, "color": "#808080"} for i in range(3000)]
    with pytest.raises(InvalidArgumentError, match=f"3000 colour hints; at most {MAX_HINTS}"):
        Hints.loads(json.dumps(points))
    with pytest.raises(InvalidArgumentError, match=f"at most {MAX_HINTS}"):
        Hints.of([f"{i},0,#808080" for i in range(MAX_HINTS + 1)])
    with pytest.raises(InvalidArgumentError, match="bytes of JSON"):
        Hints.loads(" " * (2 << 20))


def test_points_are_checked_against_the_photo():
    hints = Hints.of(["0,0,#ff0000", "63,47,#00ff00"])
    hints.check((64, 48))
    outside = r"hint 63,47,#00ff00 lies outside the 63x48 photo \(x from 0 to 62"
    with pytest.raises(InvalidArgumentError, match=outside):
        hints.check((63, 48))
    with pytest.raises(InvalidArgumentError, match="placed on a 64x48 photo; this one is 128x96"):
        hints.with_size((64, 48)).check((128, 96))


def test_a_file_that_is_not_hints_is_named(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not json")
    with pytest.raises(InvalidArgumentError, match="photo.jpg: the hints are not valid JSON"):
        Hints.load(path)
