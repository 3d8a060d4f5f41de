"""Colorizing with colour hints: a point keeps its colour, it spreads along the photo's structure and not
across strong edges, the gray levels stay the input's, a session renders again what `colorize` gives, and
colours are suggested for a point."""
import numpy as np
import pytest
from PIL import Image

from colorize import (Colorizer, ColorizeSession, Hint, Hints, HintSettings, colorize, colorize_session,
                      colorize_with_index, create_colorizer)
from colorize.exemplar import ExemplarColorizer, UntrainedExemplarColorizer
from colorize.lab import colorize_gray, luma, rgb_to_lab
from colorize.propagation import HintPropagator
from colorize.transfer import TransferColorizer
from refsearch import Index
from refsearch.errors import InvalidArgumentError


def reachable(gray: np.ndarray, x: int, y: int, ab) -> str:
    """The colour of chroma `ab` at the gray level of pixel (x, y), as #rrggbb (so that it exists there)."""
    rgb = colorize_gray(gray[y:y + 1, x:x + 1], np.array([[ab]], np.float32))[0, 0]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def chroma_error(result: Image.Image, hint: Hint) -> float:
    """ΔE between the result at the hint's centre and the hint's chroma, both at the result's lightness."""
    got = rgb_to_lab(np.asarray(result)[hint.y, hint.x])[1:]
    return float(np.linalg.norm(got - rgb_to_lab(np.array(hint.rgb))[1:]))


@pytest.fixture(scope="module")
def exemplar(backbone):
    return ExemplarColorizer(backbone)


@pytest.mark.parametrize("size", [(128, 96), (640, 480), (90, 40)])
def test_each_point_keeps_its_colour_and_the_gray_levels_stay(make_scene, exemplar, size):
    """At the working size, above it (the chroma is enlarged) and below it (reduced)."""
    target = make_scene(size, seed=1).convert("L")
    gray = np.asarray(target)
    width, height = size
    rng = np.random.default_rng(size[0])
    positions = [(int(rng.integers(width)), int(rng.integers(height))) for _ in range(6)]
    colours = [(50, 30), (-40, 45), (10, -50), (0, 0), (-20, -20), (35, 60)]
    hints = [Hint(x, y, reachable(gray, x, y, ab)) for (x, y), ab in zip(positions, colours)]
    result = colorize(target, [make_scene((150, 110), seed=2)], exemplar, hints=hints)
    assert np.array_equal(luma(np.asarray(result.image)), gray)
    assert [chroma_error(result.image, hint) for hint in hints] == pytest.approx([0] * 6, abs=3)
    assert result.hints == Hints(tuple(hints), size)
    assert any("6 colour points" in note for note in result.notes)


@pytest.mark.parametrize("size, method, gap", [((640, 480), "exemplar", 4),
                                               ((128, 96), "exemplar-untrained", 2)])
def test_close_points_of_opposite_colours(make_scene, backbone, size, method, gap):
    """Each keeps its colour from `gap` pixels apart: about two pixels of the working resolution (341x256
    here), where the working pixels that the two centres are resampled from no longer overlap. Closer, on
    one propagation cell or one pixel, they disagree: the later keeps its colour and nothing blows up."""
    target = make_scene(size, seed=4).convert("L")
    gray = np.asarray(target)
    width, height = size
    warm, cold = (50, 40), (-40, -45)

    def pairs(offsets) -> list[Hint]:
        hints = []
        for number, (dx, dy) in enumerate(offsets):
            x, y = width * (number + 1) // 7, height * (number % 3 + 1) // 4
            hints += [Hint(x, y, reachable(gray, x, y, warm)),
                      Hint(x + dx, y + dy, reachable(gray, x + dx, y + dy, cold))]
        return hints

    colorizer = create_colorizer(method, backbone=backbone)
    session = colorize_session(target, [make_scene((150, 110), seed=2)], colorizer)
    apart = pairs([(gap, 0), (0, gap), (gap, gap), (gap + 1, 0), (gap, 1)])
    result = session.render(apart)
    assert np.array_equal(luma(np.asarray(result.image)), gray)
    assert [chroma_error(result.image, hint) for hint in apart] == pytest.approx([0] * len(apart), abs=3)

    touching = pairs([(1, 0), (0, 1), (1, 1), (0, 0)])
    result = session.render(touching)
    assert np.isfinite(result.confidence).all()
    assert np.array_equal(luma(np.asarray(result.image)), gray)
    assert [chroma_error(result.image, hint) for hint in touching[1::2]] == pytest.approx([0] * 4, abs=3)
    # no colour stronger than the points' and the method's own (a singular solve gave 130 ab units here)
    def strongest(rgb) -> float:
        return float(np.linalg.norm(rgb_to_lab(np.asarray(rgb, np.float64))[..., 1:], axis=-1).max())

    bound = max(strongest([hint.rgb for hint in touching]), strongest(session.render().image))
    assert strongest(result.image) <= bound + 3


def test_a_point_spreads_through_its_region_and_not_across_a_strong_edge():
    gray = np.full((96, 128), 70, np.uint8)
    gray[:, 64:] = 190
    gray[40:56, 20:44] = 95  # a patch of other, but near, gray inside the left region
    target = Image.fromarray(gray)
    neutral = Image.new("RGB", (64, 64), (128, 128, 128))
    hint = Hint(10, 10, reachable(gray, 10, 10, (45, 35)))
    result = colorize(target, [neutral], TransferColorizer(), hints=[hint])
    ab = rgb_to_lab(np.asarray(result.image))[..., 1:]
    hint_ab = rgb_to_lab(np.array(hint.rgb))[1:]
    left, right = ab[:, :60], ab[:, 68:]
    assert np.linalg.norm(left - hint_ab, axis=-1).mean() < 6
    assert np.linalg.norm(right, axis=-1).mean() < 2
    assert np.array_equal(luma(np.asarray(result.image)), gray)


def test_points_that_confirm_the_methods_colours_keep_them_and_points_that_do_not_fade_them():
    luma_values = np.tile(np.linspace(40, 200, 64).astype(np.uint8), (48, 1))
    propagator = HintPropagator(luma_values)
    base = np.array([[30.0, 20.0], [-25.0, 10.0], [5.0, -40.0]])
    cells = [propagator.cell(y, x) for y, x in ((5, 5), (30, 40), (40, 10))]
    assert propagator.solve(cells, base, base).trust > 0.9
    assert propagator.solve(cells, np.zeros_like(base), base).trust < 0.05
    held = HintPropagator(luma_values, HintSettings(trust=0.0, trust_spread=0.0))
    assert held.solve(cells, base, base).trust == 0.0


def test_a_session_renders_what_colorize_gives(gray_scene, colour_scene, exemplar):
    hints = ["20,70,#c03028", "100,20,#3050d0"]
    session = colorize_session(gray_scene, [colour_scene], exemplar)
    assert session.uses_hints
    for points, saturation in ((None, 1.0), (hints, 1.0), (hints[:1], 0.5), (None, 0.5)):
        again = colorize(gray_scene, [colour_scene], exemplar, hints=points, saturation=saturation)
        rendered = session.render(points, saturation)
        assert np.array_equal(np.asarray(rendered.image), np.asarray(again.image)), (points, saturation)
        assert np.array_equal(rendered.source, again.source)
        assert rendered.references[0].image.size == (128, 96)
    # points moved and taken away, in any order, render as they would fresh
    assert np.array_equal(np.asarray(session.render(hints[1:]).image),
                          np.asarray(colorize(gray_scene, [colour_scene], exemplar, hints=hints[1:]).image))
    assert np.array_equal(np.asarray(session.render().image),
                          np.asarray(colorize(gray_scene, [colour_scene], exemplar).image))


def test_saturation_scales_the_methods_colour_and_not_the_points(gray_scene, colour_scene, exemplar):
    gray = np.asarray(gray_scene)
    hint = Hint(30, 60, reachable(gray, 30, 60, (40, -30)))
    result = colorize(gray_scene, [colour_scene], exemplar, hints=[hint], saturation=0.3)
    assert chroma_error(result.image, hint) < 3


def test_points_are_given_to_the_pixel_and_checked_against_the_photo(gray_scene, colour_scene):
    with pytest.raises(InvalidArgumentError, match="outside the 128x96 photo"):
        colorize(gray_scene, [colour_scene], "transfer", hints=["128,0,#ff0000"])
    with pytest.raises(InvalidArgumentError, match="six hex digits"):
        colorize(gray_scene, [colour_scene], "transfer", hints=["1,1,#ff00"])
    with pytest.raises(InvalidArgumentError, match="at most 256"):
        colorize(gray_scene, [colour_scene], "transfer",
                 hints=[f"{i % 128},{i // 128},#ff0000" for i in range(300)])


class Sepia(Colorizer):
    name = "sepia"

    def colorize(self, target, references):
        from colorize import ColorizeResult

        gray = np.asarray(target)
        rgb = colorize_gray(gray, np.broadcast_to(np.array([8.0, 20.0], np.float32), gray.shape + (2,)))
        return ColorizeResult(Image.fromarray(rgb), np.ones(gray.shape, np.float32),
                              np.zeros(gray.shape, np.int8), self.name)


def test_a_method_that_cannot_use_points_says_so(gray_scene, colour_scene):
    plain = colorize(gray_scene, [colour_scene], Sepia())
    pointed = colorize(gray_scene, [colour_scene], Sepia(), hints=["5,5,#00ff00"])
    assert np.array_equal(np.asarray(plain.image), np.asarray(pointed.image))
    assert any("cannot use colour hints: the 1 points were left out" in note for note in pointed.notes)
    assert not pointed.hints and not colorize_session(gray_scene, [colour_scene], Sepia()).uses_hints
    assert colorize_session(gray_scene, [colour_scene], Sepia()).suggest(5, 5)[-1].source == "no colour"


def test_suggested_colours_are_at_the_points_gray_level(make_scene, exemplar, backbone):
    target = make_scene(seed=1).convert("L")
    gray = np.asarray(target)
    x, y = 38, 62  # in the red disc
    with_prior = colorize_session(target, [make_scene(seed=1), make_scene((150, 110), seed=2)], exemplar)
    suggestions = with_prior.suggest(x, y)
    sources = [s.source for s in suggestions]
    assert sources[0] == "prior" and "reference 1" in sources and sources[-1] == "no colour"
    assert len(suggestions) <= 6 and all(0 <= s.share <= 1 for s in suggestions)
    for suggestion in suggestions:
        rgb = np.array([[[int(suggestion.color[i:i + 2], 16) for i in (1, 3, 5)]]], np.uint8)
        assert luma(rgb)[0, 0] == gray[y, x]
    reference = next(s for s in suggestions if s.source == "reference 1")
    assert rgb_to_lab(np.array(Hint(0, 0, reference.color).rgb))[1] > 25  # the original's red, matched there
    assert [s.source for s in with_prior.suggest(x, y, count=2)] == ["prior", "no colour"]

    untrained = colorize_session(target, [make_scene(seed=1)], UntrainedExemplarColorizer(backbone))
    assert [s.source for s in untrained.suggest(x, y)] == ["reference 1", "no colour"]
    transfer = colorize_session(target, [make_scene(seed=1)], TransferColorizer())
    assert [s.source for s in transfer.suggest(x, y)] == ["this method's colour", "no colour"]
    with pytest.raises(InvalidArgumentError, match="outside"):
        transfer.suggest(128, 0)


def test_an_index_colorizes_with_points(small_index, make_scene):
    target = make_scene(seed=3).convert("L")
    gray = np.asarray(target)
    hint = Hint(64, 20, reachable(gray, 64, 20, (-30, 40)))
    with Index.open(small_index) as index:
        result = index.colorize(target, topk=2, hints=[hint])
        assert np.array_equal(np.asarray(result.image),
                              np.asarray(colorize_with_index(index, target, 2, hints=Hints((hint,))).image))
    assert chroma_error(result.image, hint) < 3 and result.hints.points == (hint,)


def test_a_session_made_from_a_prediction_directly():
    """What the benchmark's plain propagation is: no method colour, the points alone (Levin et al. 2004)."""
    from colorize import ChromaPrediction

    gray = np.full((40, 60), 120, np.uint8)
    nothing = ChromaPrediction(np.zeros((40, 60, 2), np.float32), np.zeros((40, 60), np.float32),
                               np.full((40, 60), -1, np.int8))
    session = ColorizeSession.of_prediction(Image.fromarray(gray), gray, nothing, "levin",
                                            HintSettings(trust=0.0, trust_spread=0.0, decay=1e-6))
    colour = reachable(gray, 5, 5, (20, 20))
    ab = rgb_to_lab(np.asarray(session.render([f"5,5,{colour}"]).image))[..., 1:]
    # one point, nothing under it: its colour everywhere
    assert np.allclose(ab, rgb_to_lab(np.array(Hint(5, 5, colour).rgb))[1:], atol=2.5)


@pytest.mark.parametrize("setting, message", [
    ({"scale": 0}, "scale must be above 0"), ({"scale": 1.5}, r"scale must be in \(0, 1\]"),
    ({"decay": -1}, "decay must be 0 or more"), ({"edge_sigma": 0}, "edge_sigma must be above 0"),
    ({"nugget": 0}, "nugget must be above 0"),
    ({"trust": 0.5, "max_trust": 0.4}, "max_trust must be at least trust"),
])
def test_hint_settings_are_validated(setting, message):
    with pytest.raises(InvalidArgumentError, match=message):
        HintSettings(**setting)
