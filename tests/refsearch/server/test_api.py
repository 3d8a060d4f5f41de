"""The HTTP API of `refsearch serve`, in process: every endpoint against the library's own answers for the
same photo, and every refusal (400, 404, 413) as a JSON error, never a 500."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import struct
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import colorize
import refsearch
from colorize.lab import luma
from refsearch.errors import IndexStateError, NotFoundError
from refsearch.images import ImageError
from refsearch.results import SearchResponse
from refsearch.server import IndexHolder, ServerSettings, create_app
from refsearch.writer import IndexWriter

LOCAL = "http://127.0.0.1"  # the server answers the names of loopback, where it is bound by default


@pytest.fixture(scope="module")
def client(served_index) -> TestClient:
    with TestClient(create_app(served_index), base_url=LOCAL) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def query(demo_queries) -> Path:
    return next(q for q in demo_queries if "Eskimo_dog" in q.name)


def upload(path: Path, name: str | None = None) -> dict:
    return {"image": (name or path.name, path.read_bytes(), "image/jpeg")}


def assert_error(response, status: int, *fragments: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    for fragment in fragments:
        assert fragment in body["error"], body["error"]
    return body["error"]


def png_image(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG"
    return image


def from_data_url(url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))


# -- health ----------------------------------------------------------------------------------------
def test_health_names_the_index(client, served_index):
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["images"] == len(served_index) == 37
    assert body["backbone"] == served_index.config.backbone == "efficientnet-lite2"
    assert colorize.DEFAULT_METHOD in body["methods"]
    assert body["limits"]["max_upload_bytes"] == 32 * 1024 * 1024
    assert body["limits"]["max_pixels"] == 50_000_000


# -- search ----------------------------------------------------------------------------------------
RESULT_FIELDS = {"rank", "id", "path", "label", "label_name", "score", "semantic", "luminance"}


def test_search_answers_as_index_search_does(client, served_index, demo_queries):
    for photo in demo_queries:
        response = client.post("/api/search?k=5", files=upload(photo))
        assert response.status_code == 200, response.text
        body = response.json()
        expected = served_index.search(photo, k=5)
        assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4, 5]
        for got, want in zip(body["results"], expected.results, strict=True):
            assert RESULT_FIELDS <= set(got)
            assert {f: got[f] for f in RESULT_FIELDS} == {f: getattr(want, f) for f in RESULT_FIELDS}
        assert body["predicted"] == [{"wnid": p.wnid, "name": p.name, "probability": p.probability}
                                     for p in expected.predicted]
        assert body["notes"] == expected.notes
        assert "query" not in body  # the server's scratch file name means nothing to the client


@pytest.mark.parametrize("query_string, options", [
    ("class=n02110063", {"class_wnid": "n02110063"}),
    ("any_class=true", {"any_class": True}),
    ("global_only=true", {"rerank": False}),
    ("candidates=5&lum_weight=2.5&rescue=0",
     {"global_candidates": 5, "luminance_weight": 2.5, "rescue_candidates": 0}),
])
def test_search_options_are_the_cli_options(client, served_index, query, query_string, options):
    body = client.post(f"/api/search?k=4&{query_string}", files=upload(query)).json()
    expected = served_index.search(query, k=4, **options)
    assert [(r["id"], r["score"]) for r in body["results"]] == [(r.id, r.score) for r in expected.results]
    assert body["notes"] == expected.notes
    def outcome(response):
        return [(r.id, r.score) for r in response.results], response.notes
    assert outcome(expected) != outcome(served_index.search(query, k=4)), "the option changes nothing here"


def test_an_indexed_photo_finds_itself_unless_excluded(client, served_index, demo_photos):
    photo = demo_photos[5]
    own = served_index.record_of_path(photo).id
    found = client.post("/api/search?k=3", files=upload(photo, "renamed.jpg")).json()["results"]
    assert found[0]["id"] == own
    excluded = client.post("/api/search?k=3&exclude_self=true", files=upload(photo)).json()["results"]
    assert own not in [r["id"] for r in excluded] and len(excluded) == 3


@pytest.mark.parametrize("query_string, fragment", [
    ("k=0", "k"), ("k=abc", "k"), ("k=100000", "k"), ("class=n02110063&any_class=true", "exclude each other"),
    ("class=dog", "not an ImageNet"), ("lum_weight=nan", "lum_weight"), ("candidates=-1", "candidates"),
    ("k=4&candidates=2", "at least k"),
])
def test_bad_search_options_are_400(client, query, query_string, fragment):
    assert_error(client.post(f"/api/search?{query_string}", files=upload(query)), 400, fragment)


# -- colorize --------------------------------------------------------------------------------------
def test_colorize_keeps_the_gray_levels_at_the_input_size(client, served_index, query):
    image = png_image(client.post("/api/colorize?topk=2", files=upload(query)))
    gray = Image.open(query).convert("L")
    assert image.mode == "RGB" and image.size == gray.size
    assert np.array_equal(np.asarray(image.convert("L")), np.asarray(gray))
    expected = served_index.colorize(query, topk=2).image
    assert np.array_equal(np.asarray(image), np.asarray(expected))  # the same as Index.colorize


def test_a_colour_photo_is_colorized_from_its_luminance(client, demo_photos):
    photo = demo_photos[30]
    image = png_image(client.post("/api/colorize?topk=1&exclude_self=true", files=upload(photo)))
    assert np.array_equal(np.asarray(image.convert("L")), np.asarray(Image.open(photo).convert("L")))


def test_chosen_references_are_the_indexed_files(client, served_index, query):
    chosen = [14, 10]
    expected = colorize.colorize(query, [served_index.record(i).path for i in chosen],
                                 backbone=served_index.network).image
    form = {"ref_id": [str(i) for i in chosen]}
    as_form = png_image(client.post("/api/colorize", files=upload(query), data=form))
    as_query = png_image(client.post("/api/colorize?ref_id=14&ref_id=10", files=upload(query)))
    for image in (as_form, as_query):
        assert np.array_equal(np.asarray(image), np.asarray(expected))
    retrieved = png_image(client.post("/api/colorize?topk=2", files=upload(query)))
    assert not np.array_equal(np.asarray(retrieved), np.asarray(expected))


def test_colorize_outputs_the_confidence_map_and_json(client, query):
    gray = Image.open(query).convert("L")
    confidence = png_image(client.post("/api/colorize?ref_id=10&output=confidence", files=upload(query)))
    assert confidence.mode == "L" and confidence.size == gray.size
    body = client.post("/api/colorize?ref_id=10&output=json", files=upload(query)).json()
    assert np.array_equal(np.asarray(from_data_url(body["confidence"])), np.asarray(confidence))
    image = png_image(client.post("/api/colorize?ref_id=10", files=upload(query)))
    assert np.array_equal(np.asarray(from_data_url(body["image"])), np.asarray(image))
    assert (body["width"], body["height"]) == gray.size
    assert [r["id"] for r in body["references"]] == [10] and body["references"][0]["label_name"] == "malamute"
    assert body["mean_confidence"] == pytest.approx(np.asarray(confidence).mean() / 255, abs=0.01)


def test_retrieved_references_are_named_by_id(client, served_index, query):
    body = client.post("/api/colorize?topk=3&output=json", files=upload(query)).json()
    expected = served_index.search(query, k=3).results
    assert [r["id"] for r in body["references"]] == [r.id for r in expected]
    assert [r["score"] for r in body["references"]] == [r.score for r in expected]


@pytest.mark.parametrize("query_string, status, fragment", [
    ("ref_id=99999", 404, "no image with id 99999"),
    ("ref_id=/etc/passwd", 400, "ref_id"),
    ("ref_id=1&ref_id=2&ref_id=3&ref_id=4&ref_id=5&ref_id=6&ref_id=7&ref_id=8&ref_id=9", 400, "at most 8"),
    ("method=nonsense", 400, "unknown colorize method"), ("topk=0", 400, "topk"),
    ("saturation=9", 400, "saturation"), ("output=jpeg", 400, "output"),
])
def test_bad_colorize_requests(client, query, query_string, status, fragment):
    assert_error(client.post(f"/api/colorize?{query_string}", files=upload(query)), status, fragment)


# -- colour points ---------------------------------------------------------------------------------
POINTS = [{"x": 60, "y": 50, "color": "#b03a2e"}, {"x": 150, "y": 120, "color": "#2e6ab0"}]


def test_colorize_takes_colour_points_and_keeps_a_session(client, served_index, query):
    form = {"ref_id": ["14", "10"], "hints": json.dumps({"hints": POINTS})}
    body = client.post("/api/colorize?output=json", files=upload(query), data=form).json()
    references = [served_index.record(i).path for i in (14, 10)]
    expected = colorize.colorize(query, references, backbone=served_index.network, hints=POINTS).image
    assert np.array_equal(np.asarray(from_data_url(body["image"])), np.asarray(expected))
    assert body["hints"] == POINTS and body["uses_hints"] and body["session"]
    as_image = png_image(client.post("/api/colorize", files=upload(query), data=form))
    assert np.array_equal(np.asarray(as_image), np.asarray(expected))

    # the session renders other points without the network, as a fresh colorize would
    moved = [{**POINTS[0], "x": 30}]
    rendered = client.post(f"/api/sessions/{body['session']}/render?saturation=0.5", json={"hints": moved})
    assert rendered.status_code == 200, rendered.text
    again = rendered.json()
    fresh = colorize.colorize(query, references, backbone=served_index.network, hints=moved, saturation=0.5)
    assert np.array_equal(np.asarray(from_data_url(again["image"])), np.asarray(fresh.image))
    assert again["hints"] == moved and again["session"] == body["session"]
    assert again["references"] == body["references"]
    none = client.post(f"/api/sessions/{body['session']}/render", json=[]).json()
    plain = colorize.colorize(query, references, backbone=served_index.network).image
    assert np.array_equal(np.asarray(from_data_url(none["image"])), np.asarray(plain))


def test_suggested_colours_for_a_point(client, query):
    session = client.post("/api/colorize?topk=2&output=json", files=upload(query)).json()["session"]
    body = client.get(f"/api/sessions/{session}/suggestions?x=60&y=50&n=4").json()
    assert (body["x"], body["y"]) == (60, 50) and len(body["suggestions"]) <= 4
    assert body["suggestions"][0]["source"] == "prior" and body["suggestions"][-1]["source"] == "no colour"
    gray = np.asarray(Image.open(query).convert("L"))
    for suggestion in body["suggestions"]:
        assert set(suggestion) == {"color", "share", "source"}
        rgb = np.array([[[int(suggestion["color"][i:i + 2], 16) for i in (1, 3, 5)]]], np.uint8)
        assert luma(rgb)[0, 0] == gray[50, 60]  # at the point's own gray level


@pytest.mark.parametrize("points, status, fragment", [
    ("{", 400, "not valid JSON"), ('{"points": []}', 400, "not colour hints"),
    ('[{"x": 1, "y": 2, "color": "red"}]', 400, "six hex digits"),
    ('[{"x": 5000, "y": 2, "color": "#ff0000"}]', 400, "outside the"),
    ('[{"x": -1, "y": 2, "color": "#ff0000"}]', 400, "0 or more"),
    (json.dumps([{"x": i % 100, "y": 0, "color": "#808080"} for i in range(2000)]), 400, "at most 256"),
])
def test_bad_colour_points_are_400(client, query, points, status, fragment):
    assert_error(client.post("/api/colorize?topk=1", files=upload(query), data={"hints": points}), status,
                 fragment)
    session = client.post("/api/colorize?topk=1&output=json", files=upload(query)).json()["session"]
    response = client.post(f"/api/sessions/{session}/render", content=points,
                           headers={"content-type": "application/json"})
    assert_error(response, status, fragment)


def test_bad_session_requests(client, query):
    assert_error(client.post("/api/sessions/nonsense/render", json=[]), 404, "no longer held")
    assert_error(client.get("/api/sessions/nonsense/suggestions?x=1&y=1"), 404, "no longer held")
    session = client.post("/api/colorize?topk=1&output=json", files=upload(query)).json()["session"]
    width, height = Image.open(query).size
    assert_error(client.get(f"/api/sessions/{session}/suggestions?x={width}&y=0"), 400, "outside")
    assert_error(client.get(f"/api/sessions/{session}/suggestions?x=-1&y=0"), 400, "x")
    assert_error(client.get(f"/api/sessions/{session}/suggestions?y=0"), 400, "x")
    assert_error(client.post(f"/api/sessions/{session}/render", content=b" " * (2 << 20)), 413, "limit")


def test_the_server_keeps_a_bounded_number_of_sessions(served_index, query):
    with TestClient(create_app(served_index, ServerSettings(max_sessions=1)), base_url=LOCAL) as small:
        first = small.post("/api/colorize?topk=1&output=json", files=upload(query)).json()["session"]
        second = small.post("/api/colorize?topk=1&output=json", files=upload(query)).json()["session"]
        assert small.post(f"/api/sessions/{second}/render", json=POINTS).status_code == 200
        dropped = small.post(f"/api/sessions/{first}/render", json=POINTS)
        assert_error(dropped, 404, "colorize the photo again")


# -- indexed images --------------------------------------------------------------------------------
def test_an_indexed_image_is_served_as_its_file(client, served_index):
    record = served_index.record(7)
    response = client.get("/api/images/7")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content == Path(record.path).read_bytes()


@pytest.mark.parametrize("size", [16, 64, 150])
def test_thumbnails_have_the_short_side_asked_for(client, served_index, size):
    record = served_index.record(3)
    response = client.get(f"/api/images/3?size={size}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    thumbnail = Image.open(io.BytesIO(response.content))
    assert record.width > record.height
    assert thumbnail.size == (round(record.width * size / record.height), size)
    assert client.get(f"/api/images/3?size={size}").content == response.content  # from the cache


def test_a_thumbnail_is_never_larger_than_its_image(client, served_index):
    record = served_index.record(3)
    thumbnail = Image.open(io.BytesIO(client.get("/api/images/3?size=1024").content))
    assert thumbnail.size == (record.width, record.height)


def test_a_record_describes_an_image(client, served_index):
    body = client.get("/api/records/10").json()
    record = served_index.record(10)
    assert body["id"] == 10 and body["label"] == record.label and body["label_name"] == "malamute"
    assert (body["width"], body["height"]) == (record.width, record.height)


@pytest.mark.parametrize("url", ["/api/images/99999", "/api/images/-1", f"/api/images/{2 ** 70}",
                                 "/api/images/abc", "/api/images/99999?size=64", "/api/records/99999",
                                 "/api/images/1.5"])
def test_an_unknown_id_is_404(client, url):
    assert_error(client.get(url), 404, "no image with id")


@pytest.mark.parametrize("size", [0, 8, 5000, "x"])
def test_a_bad_thumbnail_size_is_400(client, size):
    assert_error(client.get(f"/api/images/3?size={size}"), 400, "size")


# -- bad uploads -----------------------------------------------------------------------------------
def truncated_jpeg(photo: Path) -> bytes:
    data = photo.read_bytes()
    return data[: len(data) // 2]


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 1-bit pixels, with no pixel data behind it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("endpoint", ["/api/search", "/api/colorize"])
def test_what_is_not_an_image_is_400(client, demo_photos, endpoint):
    def post(name: str, data: bytes):
        return client.post(endpoint, files={"image": (name, data, "image/jpeg")})
    assert_error(post("notes.txt", b"just some text\n"), 400, "not an image")
    assert_error(post("x.jpg", truncated_jpeg(demo_photos[0])), 400, "truncated")
    assert_error(post("empty.jpg", b""), 400, "empty")
    assert_error(client.post(endpoint), 400, "multipart file field named 'image'")
    assert_error(client.post(endpoint, data={"image": str(demo_photos[0])}), 400, "image")


def test_errors_do_not_show_the_scratch_file(client, demo_photos):
    response = client.post("/api/search", files={"image": ("x.jpg", truncated_jpeg(demo_photos[0]))})
    message = assert_error(response, 400)
    assert "refsearch-upload" not in message and "/tmp" not in message


@pytest.mark.parametrize("endpoint", ["/api/search", "/api/colorize"])
def test_an_image_over_the_pixel_limit_is_413_from_its_header(client, endpoint):
    # Decoding would fail (there are no pixels), so a 413 shows the header alone was judged.
    claimed = huge_png_header(100_000, 100_000)
    assert len(claimed) < 100
    response = client.post(endpoint, files={"image": ("bomb.png", claimed, "image/png")})
    assert_error(response, 413, "megapixels")


def test_a_real_small_png_of_many_pixels_is_413(client):
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, "PNG")
    assert len(buffer.getvalue()) < 100_000  # a few kilobytes that decode to 100 megapixels
    response = client.post("/api/search", files={"image": ("bomb.png", buffer.getvalue(), "image/png")})
    assert_error(response, 413, "10000x10000")


def test_the_pixel_limit_is_a_setting(served_index, query):
    width, height = Image.open(query).size
    with TestClient(create_app(served_index, ServerSettings(max_pixels=width * height - 1)),
                    base_url=LOCAL) as strict:
        assert_error(strict.post("/api/search", files=upload(query)), 413, "megapixels")
    with TestClient(create_app(served_index, ServerSettings(max_pixels=width * height)), base_url=LOCAL) as exact:
        assert exact.post("/api/search?k=1", files=upload(query)).status_code == 200


def test_an_upload_over_the_default_limit_is_413(client):
    oversized = b"\xff\xd8\xff" + bytes(32 * 1024 * 1024 + 1)
    response = client.post("/api/search", files={"image": ("big.jpg", oversized, "image/jpeg")})
    assert_error(response, 413, "32 MB")


def multipart(data: bytes, boundary: str = "refsearch-test-boundary") -> tuple[bytes, str]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_the_upload_limit_holds_for_chunked_bodies(served_index, query):
    settings = ServerSettings(max_upload_bytes=200_000)
    photo = query.read_bytes()
    assert len(photo) < 200_000
    body, content_type = multipart(photo + bytes(2_000_000))
    sent = 0

    async def chunks():  # no Content-Length: the limit must be counted as the body arrives
        nonlocal sent
        for start in range(0, len(body), 16_384):
            sent += len(body[start:start + 16_384])
            yield body[start:start + 16_384]

    async def post(http, content):
        return await http.post("/api/search?k=2", content=content, headers={"content-type": content_type})

    async def scenario():
        transport = httpx.ASGITransport(app=create_app(served_index, settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            refused = await post(http, chunks())
            small, _ = multipart(photo)
            return refused, await post(http, small)

    refused, accepted = asyncio.run(scenario())
    assert_error(refused, 413, "limit")
    assert "content-length" not in refused.request.headers
    assert sent < 400_000  # refused once past the limit, not after reading the 2 MB
    assert accepted.status_code == 200


def test_a_file_just_over_the_limit_is_413(served_index, query):
    photo = query.read_bytes()
    # The body is within the allowance for multipart overhead; the file itself is one byte over.
    with TestClient(create_app(served_index, ServerSettings(max_upload_bytes=200_000)),
                    base_url=LOCAL) as limited:
        def post(size: int):
            padded = photo + bytes(size - len(photo))
            return limited.post("/api/search?k=1", files={"image": ("x.jpg", padded)})
        assert_error(post(200_001), 413, "limit")
        assert post(200_000).status_code == 200


# -- no paths, read-only ---------------------------------------------------------------------------
ALLOWED_PARAMETERS = {"k", "class", "any_class", "exclude_self", "candidates", "lum_weight", "rescue",
                      "global_only", "topk", "ref_id", "method", "saturation", "output", "image_id", "size",
                      "threshold", "n", "show", "session_id", "x", "y"}
# checked against fixed sets of names, or (session_id) looked up among the sessions the server holds
TEXT_PARAMETERS = {"class", "method", "output", "session_id"}


def test_no_endpoint_takes_a_path(client):
    schema = client.get("/api/openapi.json").json()
    for route, operations in schema["paths"].items():
        assert set(operations) <= {"get", "post"}, route
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                assert parameter["name"] in ALLOWED_PARAMETERS, (route, parameter["name"])
                types = {s.get("type") for s in parameter["schema"].get("anyOf", [parameter["schema"]])}
                if "string" in types:
                    assert parameter["name"] in TEXT_PARAMETERS, (route, parameter["name"])
            body = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            if body:
                reference = body["schema"]["$ref"].split("/")[-1]
                fields = schema["components"]["schemas"][reference]["properties"]
                assert set(fields) <= {"image", "ref_id", "hints"}, route  # hints: JSON colour points
                image = fields["image"]
                assert image.get("format") == "binary" or image.get("contentMediaType"), image  # a file
                if "ref_id" in fields:
                    assert fields["ref_id"]["items"]["type"] == "integer"


@pytest.mark.parametrize("url", ["/static/../pyproject.toml", "/static/%2e%2e/pyproject.toml",
                                 "/static/..%2f..%2fpyproject.toml", "/api/images/..%2f..%2fpyproject.toml",
                                 "/static//etc/passwd", "/pyproject.toml"])
def test_file_system_paths_are_not_reachable(client, url):
    response = client.get(url)
    assert response.status_code == 404
    assert b"[project]" not in response.content and b"root:" not in response.content


def test_a_path_given_where_a_photo_belongs_is_not_opened(client, demo_photos):
    path = str(demo_photos[0]).encode()
    response = client.post("/api/search", files={"image": ("x.txt", path, "text/plain")})
    assert_error(response, 400, "not an image")


def test_nothing_over_http_changes_the_index(client, served_index, query):
    folder = served_index.path

    def snapshot() -> dict:
        return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
                if p.is_file() and p.name != "lock.mdb"}
    before = snapshot()
    assert Path("manifest.json") in before and len(before) > 3
    client.post("/api/search?k=2", files=upload(query))
    client.post("/api/colorize?ref_id=3", files=upload(query))
    client.get("/api/review/outliers?n=3")
    for method in ("put", "patch", "delete"):
        assert_error(client.request(method, "/api/images/3"), 405)
    assert snapshot() == before


# -- review ----------------------------------------------------------------------------------------
def test_review_endpoints_are_the_curation_calls(client, served_index):
    def member_ids(found: dict) -> list[list[int]]:
        return [[m["id"] for m in g["members"]] for g in found["groups"]]
    duplicates = client.get("/api/review/duplicates").json()
    assert member_ids(duplicates) == [g.ids for g in served_index.curation.near_duplicates()]
    low = client.get("/api/review/duplicates?threshold=0.3").json()
    assert member_ids(low) == [g.ids for g in served_index.curation.near_duplicates(0.3)]
    outliers = client.get("/api/review/outliers?n=5").json()["outliers"]
    assert [(o["id"], o["score"], o["nearest_id"]) for o in outliers] == \
        [(o.id, o.score, o.nearest_id) for o in served_index.curation.outliers(5)]
    clusters = client.get("/api/review/clusters?n=3&show=4").json()["clusters"]
    expected = served_index.curation.clusters(3)
    assert [(c["size"], c["members"], c["representative"]) for c in clusters] == \
        [(len(c), list(c.members[:4]), c.representative) for c in expected]
    assert_error(client.get("/api/review/outliers?n=0"), 400, "n")


def test_the_duplicates_review_says_why_each_copy_is_one(copies_index):
    with TestClient(create_app(copies_index), base_url=LOCAL) as http:
        found = http.get("/api/review/duplicates").json()
    expected = copies_index.curation.near_duplicates()
    assert len(expected) == 1
    assert [[m["id"] for m in g["members"]] for g in found["groups"]] == [expected[0].ids]
    keeper, copy = found["groups"][0]["members"]
    assert keeper["keep"] and keeper["check"] is None and not copy["keep"]
    assert copy["check"]["verified"] and copy["check"]["reason"] == expected[0].members[1].check.reason
    assert found["redundant"] == 1 and found["candidate_pairs"] == expected.candidate_pairs
    assert found["unreadable"] == []


class CountingIndex:
    """The demo index, counting the curation calls that reach it."""

    def __init__(self, index):
        self.index = index
        self.calls = 0
        self.curation = CountingCuration(self)

    def __getattr__(self, name):
        return getattr(self.index, name)

    def __len__(self):
        return len(self.index)

    def refreshed(self):  # the same generation: the app keeps asking this object
        return self


class CountingCuration:
    """The index's curation, counting the outlier reviews it computes for its CountingIndex."""

    def __init__(self, owner: CountingIndex):
        self.owner = owner

    def __getattr__(self, name):
        return getattr(self.owner.index.curation, name)

    def outliers(self, n):
        self.owner.calls += 1
        return self.owner.index.curation.outliers(n)


def test_review_results_are_computed_once(served_index):
    counting = CountingIndex(served_index)
    app = create_app(counting)

    async def together(url: str, times: int) -> list:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return [r.json() for r in await asyncio.gather(*(http.get(url) for _ in range(times)))]

    first = asyncio.run(together("/api/review/outliers?n=4", 3))
    assert first[0] == first[1] == first[2] and len(first[0]["outliers"]) == 4
    assert counting.calls == 1
    assert asyncio.run(together("/api/review/outliers?n=4", 1)) == first[:1]
    assert counting.calls == 1
    asyncio.run(together("/api/review/outliers?n=6", 1))
    assert counting.calls == 2


# -- the holder, locking and error mapping, with a stand-in index ----------------------------------
class FakeConfig:
    backbone = "fake-net"


class FakeIndex:
    """Just enough of an Index for the app: a search that can be slow or fail."""

    config = FakeConfig()

    def __init__(self, images=5, delay=0.0, error: Exception | None = None):
        self.images = images
        self.delay = delay
        self.error = error
        self.running = 0
        self.most_running = 0

    def __len__(self):
        return self.images

    def check(self):
        pass

    def search(self, image, k=10, **options):
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            time.sleep(self.delay)
            if self.error is not None:
                raise self.error
            return SearchResponse(str(image), [], [], None, ["fake"])
        finally:
            self.running -= 1


class RefreshingIndex(FakeIndex):
    def __init__(self, images, newer=None):
        super().__init__(images)
        self.newer = newer
        self.refreshes = 0

    def refreshed(self):
        self.refreshes += 1
        return self.newer or self


def test_a_refreshable_index_is_refreshed_per_request():
    newest = RefreshingIndex(9)
    first = RefreshingIndex(5, newer=newest)
    holder = IndexHolder(first)
    with TestClient(create_app(holder), base_url=LOCAL) as own:
        assert own.get("/api/health").json()["images"] == 9
        assert holder.generation == 1 and first.refreshes == 1
        assert own.get("/api/health").json()["images"] == 9
        assert holder.generation == 1 and newest.refreshes == 1
    plain = FakeIndex(3)
    assert IndexHolder(plain).current() is plain


def test_forward_passes_run_one_at_a_time_and_the_loop_stays_free(query):
    slow = FakeIndex(delay=0.4)
    app = create_app(slow)
    photo = query.read_bytes()

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            searches = [asyncio.create_task(http.post("/api/search", files={"image": ("q.jpg", photo)}))
                        for _ in range(4)]
            await asyncio.sleep(0.2)
            started = time.perf_counter()
            health = await http.get("/api/health")
            health_seconds = time.perf_counter() - started
            answers = await asyncio.gather(*searches)
        return health, health_seconds, answers

    started = time.perf_counter()
    health, health_seconds, answers = asyncio.run(scenario())
    assert all(a.status_code == 200 and a.json()["notes"] == ["fake"] for a in answers)
    assert slow.most_running == 1
    assert time.perf_counter() - started >= 4 * 0.4
    assert health.status_code == 200 and health_seconds < 0.3  # answered while searches queued


@pytest.mark.parametrize("error, status", [
    (ImageError("x", "bad pixels"), 400), (IndexStateError("the index holds no images"), 409),
    (NotFoundError("no such thing"), 404), (ValueError("k too odd"), 400),
    (colorize.ColorizeError("method broke"), 422), (RuntimeError("a bug"), 500),
])
def test_errors_are_json_with_a_status_for_their_kind(query, error, status):
    with TestClient(create_app(FakeIndex(error=error)), base_url=LOCAL, raise_server_exceptions=False) as own:
        message = assert_error(own.post("/api/search", files=upload(query)), status)
    if status == 500:
        assert "a bug" not in message and "internal error" in message
    else:
        assert str(error) in message


def test_the_server_answers_from_its_generation_and_picks_up_a_published_one(tmp_path, copy_photos, demo_photos,
                                                                           tiny_build):
    photos = copy_photos(tmp_path / "photos", 6)
    output = tmp_path / "live.index"
    tiny_build(tmp_path / "photos", output)
    with refsearch.Index.open(output) as opened:
        served = TestClient(create_app(opened), base_url=LOCAL)
        assert served.get("/api/health").json()["images"] == 6
        added = shutil.copy2(demo_photos[30], tmp_path / "photos" / demo_photos[30].name)
        shutil.copy2(demo_photos[31], tmp_path / "photos" / demo_photos[31].name)
        photos[0].unlink()
        with IndexWriter.open(output) as writer:  # an update in progress: the server still answers
            assert served.get("/api/health").json()["images"] == 6
            first = served.post("/api/search?k=6&any_class=true", files=upload(demo_photos[0])).json()
            assert str(photos[0].resolve()) in [r["path"] for r in first["results"]]
            assert writer.generation == 2
        tiny_build(tmp_path / "photos", output)
        assert served.get("/api/health").json()["images"] == 7  # generation 2: two added, one removed
        found = served.post("/api/search?k=6&any_class=true", files=upload(Path(added))).json()["results"]
        assert found[0]["path"] == str(Path(added).resolve())
        assert str(photos[0].resolve()) not in [r["path"] for r in found]
        assert served.get(f"/api/images/{found[0]['id']}").status_code == 200
