"""The page in a real headless Chromium (Debian's, driven by Playwright) against uvicorn on a loopback port:
choose or drop a photo, see its references, tick some, colorize, compare, download; the review tabs.

Set REFSEARCH_SCREENSHOTS=docs to save the screenshots docs/serve.md shows."""
from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import colorize
from colorize.lab import colorize_gray, luma, rgb_to_lab
from refsearch.server import BackgroundServer, create_app

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium); the page tests need a real "
                "browser", allow_module_level=True)
SCREENSHOTS = os.environ.get("REFSEARCH_SCREENSHOTS")


@pytest.fixture(scope="module")
def server_url(served_index) -> str:
    with BackgroundServer(create_app(served_index)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server_url):
    """A fresh page on the server, failing the test on a script error or on any request to another host."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    opened.on("console", lambda message: message.type == "error"
              and problems.append(f"console: {message.text}"))
    opened.on("request", lambda request: request.url.startswith((server_url, "blob:", "data:"))
              or problems.append(f"request elsewhere: {request.url}"))
    opened.problems = problems  # a test expecting one takes it out
    opened.goto(server_url)
    opened.wait_for_function("() => document.getElementById('index-info').textContent.includes('images')")
    yield opened
    context.close()
    assert problems == []


@pytest.fixture(scope="module")
def query(demo_queries) -> Path:
    return next(q for q in demo_queries if "Eskimo_dog" in q.name)


def screenshot(page, name: str, full_page: bool = False) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=full_page)


def wait_for_images(page, selector: str) -> None:
    # As functions, not expressions: the page's policy forbids eval, and Playwright would eval an expression.
    page.wait_for_function(f"() => [...document.querySelectorAll({selector!r})]"
                           ".every(i => i.complete && i.naturalWidth > 0)")


def test_search_tick_colorize_and_download(page, served_index, query):
    expected = served_index.search(query, k=6)
    page.fill("#k", "6")
    page.set_input_files("#file", str(query))
    page.wait_for_selector("#references img.ref-thumb")
    sources = page.eval_on_selector_all("#references img.ref-thumb",
                                        "images => images.map(i => i.getAttribute('src'))")
    assert all(source.startswith("/api/images/") for source in sources)
    assert [int(s.split("/")[3].split("?")[0]) for s in sources] == [r.id for r in expected.results]
    wait_for_images(page, "#references img.ref-thumb")
    assert page.inner_text("#predicted").startswith(expected.predicted[0].name.replace("_", " "))
    assert page.inner_text("#notes") == "\n".join(expected.notes)
    assert f"score {expected.results[0].score:.3f}" in page.inner_text("#references .ref >> nth=0")
    screenshot(page, "serve-search.png")

    # the top three come ticked: take the third away, add the fourth
    assert page.inner_text("#colorize") == "Colorize from 3 ticked"
    page.uncheck(f'.ref[data-id="{expected.results[2].id}"] input.pick')
    page.check(f'.ref[data-id="{expected.results[3].id}"] input.pick')
    chosen = [expected.results[i].id for i in (0, 1, 3)]
    assert page.inner_text("#colorize") == "Colorize from 3 ticked"
    page.click("#colorize")
    page.wait_for_selector("#colorized:not([hidden])")
    wait_for_images(page, "#colorized img")
    width, height = Image.open(query).size
    assert page.eval_on_selector("#result", "i => [i.naturalWidth, i.naturalHeight]") == [width, height]
    assert page.eval_on_selector("#confidence", "i => [i.naturalWidth, i.naturalHeight]") == [width, height]
    page.locator("#split").fill("30")
    assert page.eval_on_selector("#result", "i => i.style.clipPath") == "inset(0px 0px 0px 30%)"
    page.locator("#split").fill("55")
    screenshot(page, "serve-colorize.png", full_page=True)

    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == "gray_Eskimo_dog_colorized.png"
    saved = Image.open(download.value.path())
    assert saved.format == "PNG" and saved.size == (width, height)
    assert np.array_equal(np.asarray(saved.convert("L")), np.asarray(Image.open(query).convert("L")))
    # from the ticked references, in rank order
    references = [served_index.record(i).path for i in chosen]
    wanted = colorize.colorize(query, references, backbone=served_index.network)
    assert np.array_equal(np.asarray(saved), np.asarray(wanted.image))


def test_a_dropped_photo_is_searched(page, served_index, query):
    data = base64.b64encode(query.read_bytes()).decode()
    page.evaluate("""([data, name]) => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
        const drop = new DragEvent("drop", { dataTransfer: transfer, bubbles: true });
        document.getElementById("drop").dispatchEvent(drop);
    }""", [data, query.name])
    page.wait_for_selector("#references img.ref-thumb")
    ids = page.eval_on_selector_all("#references .ref", "cards => cards.map(c => Number(c.dataset.id))")
    assert ids == [r.id for r in served_index.search(query, k=10).results]


def test_what_is_not_an_image_shows_the_server_s_error(page, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    page.set_input_files("#file", str(text))
    page.wait_for_selector("#error:not([hidden])")
    assert "not an image" in page.inner_text("#error")
    assert page.eval_on_selector_all("#references .ref", "cards => cards.length") == 0
    page.problems.remove("console: Failed to load resource: the server responded with a status of 400 "
                         "(Bad Request)")


def test_a_failed_upload_leaves_no_results_of_the_photo_before(page, query, tmp_path):
    page.set_input_files("#file", str(query))
    page.wait_for_selector("#references .ref")
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    page.set_input_files("#file", str(text))
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#drop-text") == "notes.jpg"
    assert page.eval_on_selector_all("#references .ref", "cards => cards.length") == 0
    assert page.is_hidden("#search-output")
    page.problems.remove("console: Failed to load resource: the server responded with a status of 400 "
                         "(Bad Request)")


def test_review_tabs_show_thumbnails_of_the_index(page, served_index):
    page.click(".tab[data-view=clusters]")
    page.wait_for_selector("#clusters-list .thumb img")
    wait_for_images(page, "#clusters-list img")
    sizes = [len(c) for c in served_index.curation.clusters()]
    headings = page.eval_on_selector_all("#clusters-list h3", "hs => hs.map(h => h.textContent)")
    assert [int(h.split(": ")[1].split(" ")[0]) for h in headings] == sizes
    screenshot(page, "serve-review.png")

    page.click(".tab[data-view=outliers]")
    page.wait_for_selector("#outliers-list .thumb img")
    first = page.eval_on_selector("#outliers-list .thumb img", "i => i.getAttribute('src')")
    assert first == f"/api/images/{served_index.curation.outliers(20)[0].id}?size=160"

    page.click(".tab[data-view=duplicates]")
    page.wait_for_function("() => document.getElementById('duplicates-list').textContent.length > 0 "
                           "&& !document.getElementById('duplicates-list').textContent.includes('computing')")
    groups = served_index.curation.near_duplicates()
    assert page.eval_on_selector_all("#duplicates-list .review-group", "g => g.length") == len(groups)
    if not groups:
        assert "No near-duplicates" in page.inner_text("#duplicates-list")
    assert page.is_hidden("#view-search")


def test_the_duplicates_tab_says_why_each_copy_is_one(browser, copies_index):
    expected = copies_index.curation.near_duplicates()
    with BackgroundServer(create_app(copies_index)) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.click(".tab[data-view=duplicates]")
        page.wait_for_selector("#duplicates-list .why li")
        groups = page.eval_on_selector_all("#duplicates-list .review-group", "g => g.length")
        reasons = page.eval_on_selector_all("#duplicates-list .why li", "li => li.map(i => i.textContent)")
        kept = page.eval_on_selector_all("#duplicates-list .thumb.keep", "k => k.length")
        context.close()
    assert errors == []
    assert groups == len(expected) == 1 and kept == 1
    copy = expected[0].members[1]
    assert reasons == [f"id {copy.id}: {copy.check.reason}"]


def test_colour_points_place_pick_drag_delete_and_download(page, served_index, query):
    page.set_input_files("#file", str(query))
    page.wait_for_selector("#references img.ref-thumb")
    page.click("#colorize")
    page.wait_for_selector("#colorized:not([hidden])")
    wait_for_images(page, "#colorized img")
    gray = np.asarray(Image.open(query).convert("L"))
    height, width = gray.shape
    chosen = [r.id for r in served_index.search(query, k=10).results[:3]]
    references = [served_index.record(i).path for i in chosen]

    def downloaded(selector: str):
        with page.expect_download() as download:
            page.click(selector)
        return download.value.path()

    def shown() -> np.ndarray:
        """The result the page shows now (the Download PNG link is the shown image's)."""
        assert page.get_attribute("#download", "href") == page.get_attribute("#painted", "src")
        return np.asarray(Image.open(downloaded("#download")))

    before = shown()

    def wait_for_render(count: int) -> None:
        page.wait_for_function("() => Number(document.getElementById('points-canvas').dataset.renders || 0) "
                               f">= {count}")

    def pixel(fraction_x: float, fraction_y: float) -> tuple[int, int, dict]:
        box = page.locator("#painted").bounding_box()
        position = {"x": box["width"] * fraction_x, "y": box["height"] * fraction_y}
        x, y = int(position["x"] * width / box["width"]), int(position["y"] * height / box["height"])
        return x, y, position

    # place a point: it takes the likeliest suggested colour, and the result is rendered again
    x, y, position = pixel(0.3, 0.6)
    page.click("#painted", position=position)
    page.wait_for_selector("#swatches .swatch")
    wait_for_render(1)
    assert page.inner_text("#point-list").startswith(f"{x}, {y}")
    suggested = page.eval_on_selector_all("#swatches .swatch", "s => s.map(b => b.dataset.color)")
    assert len(suggested) >= 2 and page.input_value("#point-color") == suggested[0]
    # pick the second suggestion, then a colour of our own with the picker
    page.click("#swatches .swatch >> nth=1")
    wait_for_render(2)
    assert page.input_value("#point-color") == suggested[1]
    reachable = colorize_gray(gray[y:y + 1, x:x + 1], np.array([[[45.0, 40.0]]]))[0, 0]  # exists at that gray
    wanted = "#" + "".join(f"{c:02x}" for c in reachable)
    page.locator("#point-color").fill(wanted)
    wait_for_render(3)
    assert "updated in" in page.inner_text("#points-info")
    page.locator("#points-canvas").scroll_into_view_if_needed()
    screenshot(page, "serve-points.png")

    result = shown()
    assert np.array_equal(luma(result), gray)
    lightness = rgb_to_lab(np.asarray(Image.fromarray(gray[y:y + 1, x:x + 1]).convert("RGB"))[0, 0])[0]
    hint_ab = rgb_to_lab(np.array([int(wanted[i:i + 2], 16) for i in (1, 3, 5)]))[1:]
    got_ab = rgb_to_lab(result[y, x])[1:]
    assert np.linalg.norm(got_ab - hint_ab) < 3, (got_ab, hint_ab, lightness)  # at the input's lightness
    assert np.linalg.norm(rgb_to_lab(before[y, x])[1:] - hint_ab) > 10  # the point changed the colour there
    assert np.array_equal(luma(before), gray)

    # drag the point elsewhere; add a second one and delete it with the Delete key
    marker = page.locator("#markers .marker").bounding_box()
    to_x, to_y, to_position = pixel(0.7, 0.4)
    canvas = page.locator("#painted").bounding_box()
    page.mouse.move(marker["x"] + marker["width"] / 2, marker["y"] + marker["height"] / 2)
    page.mouse.down()
    page.mouse.move(canvas["x"] + to_position["x"], canvas["y"] + to_position["y"], steps=6)
    page.mouse.up()
    wait_for_render(4)
    page.click("#painted", position=pixel(0.5, 0.2)[2])
    wait_for_render(5)
    assert page.eval_on_selector_all("#markers .marker", "m => m.length") == 2
    page.keyboard.press("Delete")
    wait_for_render(6)
    assert page.eval_on_selector_all("#markers .marker", "m => m.length") == 1

    saved = colorize.Hints.load(downloaded("#download-hints"))
    assert saved.size == (width, height)
    assert [(h.x, h.y, h.color) for h in saved] == [(to_x, to_y, wanted)]
    # the points replay through the library: the page's result is the library's with the same points
    replayed = colorize.colorize(query, references, backbone=served_index.network, hints=saved).image
    assert np.abs(shown().astype(int) - np.asarray(replayed).astype(int)).max() <= 1


def test_the_page_works_from_the_url_with_the_token(browser, served_index):
    from refsearch.server import ServerSettings
    from refsearch.server.trust import Trust

    token = "a-token-of-thirty-two-characters"
    with BackgroundServer(create_app(served_index, ServerSettings(trust=Trust(token=token)))) as url:
        context = browser.new_context()
        try:
            opened = context.new_page()
            opened.goto(f"{url}?token={token}")
            opened.wait_for_function("() => document.getElementById('index-info').textContent.includes('images')")
            opened.click(".tab[data-view=clusters]")
            opened.wait_for_selector("#clusters-list .thumb img")
            wait_for_images(opened, "#clusters-list img")
            without = context.new_page()
            context.clear_cookies()
            answer = without.goto(url + "api/health")
            assert answer.status == 401
        finally:
            context.close()
