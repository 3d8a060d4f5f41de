"""The HTTP API and the page of `refsearch serve`: `create_app(index, settings)` gives an ASGI app.

Read-only: no endpoint changes the index, and none takes a file-system path from the client (indexed
images are named by their id). A torch module is not safe to call from several threads at once, so every
request that runs the network waits its turn for one worker thread (queued in the event loop, so waiting
requests hold no thread) and runs under one lock; everything else that blocks (header checks, thumbnails,
curation) runs in other worker threads, and the event loop only parses requests and sends answers.
"""
from __future__ import annotations

import base64
import io
import mimetypes
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar

import anyio
import numpy as np
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException

import colorize as colorize_package
from colorize import DEFAULT_METHOD, ColorizeError, ColorizeSession, Hints, available_methods
from colorize.api import MAX_SATURATION
from colorize.hints import MAX_HINTS, MAX_HINTS_FILE_BYTES

from .. import __version__, classes
from ..backbones import BackboneError
from ..errors import IndexStateError, NotFoundError, RefsearchError
from ..images import ImageError, decode
from ..request import SearchRequest, SearchRequestError
from .holder import IndexHolder
from .settings import ServerSettings
from .trust import TrustedRequests
from .uploads import BodyLimit, RequestRejected, check_image_header, describe_bytes, scratch_file

STATIC = Path(__file__).resolve().parent / "static"
# The page needs nothing from elsewhere: scripts, styles and images from this server only (blob: and data:
# for the photo being worked on and the colorized result).
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
THUMBNAIL_QUALITY = 85
# Ids are stored as unsigned 64-bit keys; anything outside cannot name an image.
MAX_ID = 2 ** 63 - 1
# Browsers may keep images a few minutes; the index they come from is read-only while served.
CACHE_HEADERS = {"Cache-Control": "private, max-age=300"}
T = TypeVar("T")


def create_app(index: Any, settings: ServerSettings | None = None) -> FastAPI:
    """An app serving `index` (an opened refsearch.Index, or an IndexHolder giving one per request). The
    caller keeps ownership of the index: the app never closes it."""
    holder = index if isinstance(index, IndexHolder) else IndexHolder(index)
    settings = settings or ServerSettings()
    service = _Service(holder, settings)
    app = FastAPI(title="refsearch", version=__version__,
                  description="Colour reference search and colorization over one refsearch index "
                              "(read-only).",
                  # FastAPI's interactive docs load their scripts from a CDN; the schema alone is served.
                  docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.service = service
    app.add_middleware(BodyLimit, max_upload_bytes=settings.max_upload_bytes)
    app.add_middleware(_SecurityHeaders)
    app.add_middleware(TrustedRequests, trust=settings.trust)  # the outermost: before anything is read
    _add_error_handlers(app)

    def search_options(
        class_wnid: Optional[str] = Query(None, alias="class", description="Search this ImageNet class (a "
                                          "wnid like n02123045) instead of the predicted one."),
        any_class: bool = Query(False, description="Search every class."),
        exclude_self: bool = Query(False, description="Leave out indexed copies of the uploaded file."),
        candidates: Optional[int] = Query(None, ge=1, le=settings.max_candidates,
                                          description="Global candidates to re-rank (default 200)."),
        lum_weight: Optional[float] = Query(None, ge=0, le=100, allow_inf_nan=False,
                                            description="Weight w of d_lum in d_sem + w*d_lum "
                                            "(default 0.25)."),
        rescue: Optional[int] = Query(None, ge=0, le=settings.max_candidates,
                                      description="All-class neighbours also ranked when closer than "
                                      "anything in the searched classes (default 20; 0: none)."),
        global_only: bool = Query(False, description="Rank by global cosine, without the local re-rank."),
    ) -> dict:
        return {"class_wnid": class_wnid, "any_class": any_class, "exclude_self": exclude_self,
                "global_candidates": candidates, "luminance_weight": lum_weight, "rescue_candidates": rescue,
                "rerank": not global_only}

    @app.get("/api/health")
    async def health() -> dict:
        """The index being served: how many images, which network; the limits on requests. A file of the
        index found missing or cut short answers 409, naming it."""
        return await service.in_thread(service.health)

    @app.post("/api/search")
    async def search(image: UploadFile = File(..., description="The photo to find colour references for."),
                     k: int = Query(10, ge=1, le=settings.max_k, description="How many references."),
                     options: dict = Depends(search_options)) -> dict:
        """The k best colour references for the uploaded photo, as `refsearch query --json` ranks them."""
        request = _search_request(k, options)
        data = await service.read_upload(image)
        return await service.on_network(service.search, data, request)

    @app.post("/api/colorize", response_model=None)
    async def colorize(image: UploadFile = File(..., description="The photo to colorize."),
                       topk: int = Query(3, ge=1, le=settings.max_topk,
                                         description="How many retrieved references to colorize from."),
                       ref_id: list[int] = Query([], description="Colorize from these indexed images "
                                                 "instead of retrieved ones (repeatable, best first)."),
                       form_ref_id: list[int] = Form([], alias="ref_id", description="As the ref_id query "
                                                     "parameter, sent as form fields."),
                       method: str = Query(DEFAULT_METHOD, description="Colorize method (see /api/health)."),
                       saturation: float = Query(1.0, ge=0, le=MAX_SATURATION, allow_inf_nan=False,
                                                 description="Scale of the result's colour (0: the gray "
                                                 "input; below 1 closer to the true colours on average)."),
                       output: Literal["image", "confidence", "json"] = Query(
                           "image", description="image: the colorized PNG; confidence: the per-pixel "
                           "confidence as a gray PNG; json: both as data URLs, with the references used, "
                           "the points applied, and a session to apply other points to quickly."),
                       hints: Optional[str] = Form(None, description="Colour points, as JSON: a list of "
                                                   "{x, y, color: '#rrggbb'} (pixel column and row), or an "
                                                   "object with such a 'hints' list."),
                       options: dict = Depends(search_options)) -> Response:
        """The uploaded photo colorized at its own size, keeping its gray levels exactly."""
        chosen = list(dict.fromkeys([*form_ref_id, *ref_id]))
        if len(chosen) > settings.max_topk:
            raise RequestRejected(400, f"at most {settings.max_topk} references (got {len(chosen)})")
        if method not in available_methods():
            raise RequestRejected(400, f"unknown colorize method {method!r} (known: "
                                       f"{', '.join(available_methods())})")
        points = Hints.loads(hints) if hints else Hints()
        request = _search_request(topk, options)
        data = await service.read_upload(image)
        done = await service.on_network(service.colorize, data, chosen, method, request)
        done["result"] = await service.on_hints(done["session"].render, points, saturation)
        done["result"].seconds += done.pop("seconds")  # the method's part, before the render
        if output == "json":
            return JSONResponse(await service.in_thread(_colorized_json, done, service.keep_session(done)))
        picture = done["result"].image if output == "image" else _confidence_image(done["result"].confidence)
        png = await service.in_thread(_png, picture)
        filename = "colorized.png" if output == "image" else "confidence.png"
        headers = {"Content-Disposition": f'inline; filename="{filename}"',
                   "X-Mean-Confidence": f"{float(done['result'].confidence.mean()):.4f}"}
        return Response(png, media_type="image/png", headers=headers)

    @app.post("/api/sessions/{session_id}/render")
    async def render(session_id: str, request: Request,
                     saturation: float = Query(1.0, ge=0, le=MAX_SATURATION, allow_inf_nan=False,
                                               description="Scale of the method's colour, as for colorize.")
                     ) -> JSONResponse:
        """The photo of a colorize session (from `/api/colorize?output=json`) with other colour points,
        sent as the body: JSON as colorize's `hints` field. Answers as colorize's json output, in a
        fraction of a second; 404 once the server has dropped the session (colorize again)."""
        points = Hints.loads(await service.read_body(request))
        done = service.session(session_id)
        done["result"] = await service.on_hints(done["session"].render, points, saturation)
        return JSONResponse(await service.in_thread(_colorized_json, done, session_id))

    @app.get("/api/sessions/{session_id}/suggestions")
    async def suggestions(session_id: str, x: int = Query(..., ge=0, description="Pixel column."),
                          y: int = Query(..., ge=0, description="Pixel row."),
                          n: int = Query(6, ge=1, le=20, description="How many colours.")) -> dict:
        """The colours likely at a point of a colorize session's photo: the chroma prior's likeliest, each
        reference's colour matched there, and no colour, each at the point's own gray level."""
        session = service.session(session_id)["session"]
        found = await service.on_hints(session.suggest, x, y, n)
        return {"x": x, "y": y, "suggestions": [suggestion.to_dict() for suggestion in found]}

    @app.get("/api/images/{image_id}", response_model=None)
    async def image(image_id: int, size: Optional[int] = Query(
            None, ge=settings.thumbnail_sizes[0], le=settings.thumbnail_sizes[1],
            description="Send a JPEG thumbnail of this short side (never larger than the image) instead of "
            "the file.")) -> Response:
        """An indexed image: its file as it is, or a thumbnail."""
        if size is None:
            path, media_type = await service.in_thread(service.image_file, image_id)
            return FileResponse(path, media_type=media_type, headers=CACHE_HEADERS)
        jpeg = await service.in_thread(service.thumbnail, image_id, size)
        return Response(jpeg, media_type="image/jpeg", headers=CACHE_HEADERS)

    @app.get("/api/records/{image_id}")
    async def record(image_id: int) -> dict:
        """What the index holds about an image: label, prediction, size, file."""
        return await service.in_thread(service.record, image_id)

    @app.get("/api/review/duplicates")
    async def duplicates(threshold: Optional[float] = Query(
            None, ge=-1, le=1, allow_inf_nan=False, description="Similarity from which neighbouring images "
            "are checked from their pixels for being copies (default: the library's).")) -> dict:
        """Groups of copies of one picture, largest first; the first member of each is the one to keep, and
        every other carries `check`: why its pixels were judged a copy of it."""
        return await service.review("duplicates", threshold)

    @app.get("/api/review/outliers")
    async def outliers(n: int = Query(20, ge=1, le=settings.max_review, description="How many.")) -> dict:
        """The images least like their nearest neighbours, most unusual first."""
        return await service.review("outliers", n)

    @app.get("/api/review/clusters")
    async def clusters(n: Optional[int] = Query(None, ge=1, le=settings.max_review,
                                                description="How many clusters (default about "
                                                "sqrt(images / 2))."),
                       show: int = Query(12, ge=1, le=1000, description="Members listed per cluster, nearest "
                                         "the centre first.")) -> dict:
        """k-means clusters of the images, largest first, each led by the image nearest its centre."""
        found = await service.review("clusters", n)
        return {"clusters": [{**cluster, "members": cluster["members"][:show]}
                             for cluster in found["clusters"]]}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


class _Service:
    """What the endpoints do, with the index taken from the holder per request."""

    def __init__(self, holder: IndexHolder, settings: ServerSettings):
        self.holder = holder
        self.settings = settings
        self._network_lock = threading.Lock()
        self._review_lock = threading.Lock()
        self._limiters: dict[str, anyio.CapacityLimiter] = {}
        self._thumbnails = _ByteCache(settings.thumbnail_cache_bytes)
        self._reviews: OrderedDict[tuple, dict] = OrderedDict()
        # id -> the session and the references it was colorized from, as colorize's answer names them
        self._sessions: OrderedDict[str, tuple[ColorizeSession, list[dict]]] = OrderedDict()
        self._sessions_lock = threading.Lock()

    # -- running blocking work -----------------------------------------------------------------
    def _limiter(self, name: str) -> anyio.CapacityLimiter:
        # Made on first use, inside the event loop that runs the app.
        if name not in self._limiters:
            self._limiters[name] = anyio.CapacityLimiter(1)
        return self._limiters[name]

    async def in_thread(self, function: Callable[..., T], *args) -> T:
        return await anyio.to_thread.run_sync(partial(function, *args))

    async def on_network(self, function: Callable[..., T], *args) -> T:
        """Run `function` when no other request is using the network, in the one thread kept for it."""
        return await anyio.to_thread.run_sync(partial(_locked, self._network_lock, function, *args),
                                              limiter=self._limiter("network"))

    async def on_hints(self, function: Callable[..., T], *args) -> T:
        """Run `function` (applying colour points: CPU work, no network) one at a time, beside searches."""
        return await anyio.to_thread.run_sync(partial(function, *args), limiter=self._limiter("hints"))

    async def read_body(self, request: Request) -> bytes:
        body = await request.body()
        if len(body) > MAX_HINTS_FILE_BYTES:
            raise RequestRejected(413, "the points are over the limit of "
                                       f"{describe_bytes(MAX_HINTS_FILE_BYTES)}")
        return body

    def keep_session(self, done: dict) -> str:
        """Keep a colorize session for quick re-renders under a new id; the least recently used go first."""
        session_id = secrets.token_urlsafe(12)
        with self._sessions_lock:
            self._sessions[session_id] = (done["session"], done["references"])
            while len(self._sessions) > self.settings.max_sessions:
                self._sessions.popitem(last=False)
        return session_id

    def session(self, session_id: str) -> dict:
        """{"session", "references"} of a kept session; NotFoundError once it has been dropped."""
        with self._sessions_lock:
            kept = self._sessions.get(session_id)
            if kept is None:
                raise NotFoundError("this colorize session is no longer held by the server (it keeps the "
                                    f"{self.settings.max_sessions} latest)", "colorize the photo again")
            self._sessions.move_to_end(session_id)
        return {"session": kept[0], "references": kept[1]}

    async def read_upload(self, upload: UploadFile) -> bytes:
        limit = self.settings.max_upload_bytes
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise RequestRejected(413, f"the upload is over this server's limit of {describe_bytes(limit)}")
        await self.in_thread(check_image_header, data, self.settings.max_pixels)
        return data

    # -- endpoints' work -----------------------------------------------------------------------
    def health(self) -> dict:
        index = self.holder.current()
        index.check()  # a damaged file: 409, naming it
        return {"status": "ok", "images": len(index), "backbone": index.config.backbone,
                "version": __version__, "methods": available_methods(), "default_method": DEFAULT_METHOD,
                "limits": {"max_upload_bytes": self.settings.max_upload_bytes,
                           "max_pixels": self.settings.max_pixels, "max_k": self.settings.max_k,
                           "max_topk": self.settings.max_topk, "max_hints": MAX_HINTS}}

    def search(self, data: bytes, request: SearchRequest) -> dict:
        index = self.holder.current()
        with scratch_file(data) as path, _upload_errors(path):
            response = index.search(path, request=request)
        found = response.to_dict()
        del found["query"]  # the scratch file's name, which means nothing to the client
        return found

    def colorize(self, data: bytes, ref_ids: list[int], method: str, request: SearchRequest) -> dict:
        """The photo colorized once, as a session to render with colour points."""
        started = time.perf_counter()
        index = self.holder.current()
        with scratch_file(data) as path, _upload_errors(path):
            if ref_ids:
                records = [self._record_of(index, i) for i in ref_ids]
                session = colorize_package.colorize_session(path, [r.path for r in records], method,
                                                            backbone=index.network)
                used = records
            else:
                session = colorize_package.session_with_index(index, path, method=method, request=request)
                used = [_record_or_none(index, reference.name) for reference in session.references]
        references = [{"id": None if record is None else record.id, "path": reference.name,
                       "label": None if record is None else record.label,
                       "label_name": None if record is None else classes.class_name(record.label),
                       "score": reference.score}
                      for record, reference in zip(used, session.references)]
        return {"session": session, "references": references, "seconds": time.perf_counter() - started}

    def record(self, image_id: int) -> dict:
        record = self._record_of(self.holder.current(), image_id)
        return {**asdict(record), "label_name": classes.class_name(record.label),
                "prediction_name": classes.class_name(record.prediction)}

    def image_file(self, image_id: int) -> tuple[str, str]:
        record = self._record_of(self.holder.current(), image_id)
        if not os.path.isfile(record.path):
            raise NotFoundError(f"the file of image {image_id} is no longer on disk")
        media_type = mimetypes.guess_type("x" + Path(record.path).suffix.lower())[0]
        return record.path, media_type or "application/octet-stream"

    def thumbnail(self, image_id: int, size: int) -> bytes:
        record = self._record_of(self.holder.current(), image_id)
        try:
            changed = os.stat(record.path).st_mtime_ns
        except OSError:
            raise NotFoundError(f"the file of image {image_id} is no longer on disk") from None
        key = (self.holder.generation, image_id, size, changed)
        cached = self._thumbnails.get(key)
        if cached is None:
            try:
                cached = _thumbnail(record.path, size)
            except ImageError as exc:
                raise NotFoundError(f"the file of image {image_id} can no longer be read: "
                                    f"{exc.reason}") from None
            self._thumbnails.put(key, cached)
        return cached

    async def review(self, kind: str, parameter: Any) -> dict:
        found = self._reviews.get((self.holder.generation, kind, parameter))
        if found is None:
            # In a thread of its own, so that searches go on meanwhile.
            found = await anyio.to_thread.run_sync(partial(self._cached_review, kind, parameter),
                                                   limiter=self._limiter("review"))
        return found

    def _cached_review(self, kind: str, parameter: Any) -> dict:
        # One at a time, so that requests arriving together compute once, and the index's curation cache
        # is filled by one thread.
        with self._review_lock:
            index = self.holder.current()
            key = (self.holder.generation, kind, parameter)
            found = self._reviews.get(key)
            if found is None:
                found = self._review(index, kind, parameter)
                self._reviews[key] = found
                while len(self._reviews) > 16:
                    self._reviews.popitem(last=False)
            return found

    @staticmethod
    def _review(index: Any, kind: str, parameter: Any) -> dict:
        if kind == "duplicates":
            curation = index.curation
            groups = curation.near_duplicates() if parameter is None else curation.near_duplicates(parameter)
            return {"groups": [{"kind": group.kind,
                                "members": [{**asdict(member), "label_name": classes.class_name(member.label),
                                             "keep": position == 0}
                                            for position, member in enumerate(group.members)]}
                               for group in groups],
                    "redundant": len(groups.redundant_ids()), "candidate_pairs": groups.candidate_pairs,
                    "unreadable": [asdict(check) for check in groups.unreadable]}
        if kind == "outliers":
            return {"outliers": [{**asdict(o), "label_name": classes.class_name(o.label)}
                                 for o in index.curation.outliers(parameter)]}
        found = index.curation.clusters(parameter)
        return {"clusters": [{"number": c.number, "size": len(c), "cohesion": c.cohesion,
                              "representative": c.representative, "members": list(c.members)} for c in found]}

    @staticmethod
    def _record_of(index: Any, image_id: int):
        if not 0 <= image_id <= MAX_ID:
            raise NotFoundError(f"no image with id {image_id} in this index")
        try:
            return index.record(image_id)
        except KeyError:
            raise NotFoundError(f"no image with id {image_id} in this index") from None


# The search request's fields as the API names them (refsearch.request.SearchRequest).
SEARCH_OPTION_NAMES = {"class_wnid": "class", "global_candidates": "candidates", "luminance_weight": "lum_weight",
                       "rescue_candidates": "rescue", "rerank": "global_only"}


def _search_request(k: int, options: dict) -> SearchRequest:
    try:
        return SearchRequest(k, **options)
    except SearchRequestError as error:
        raise RequestRejected(400, "; ".join(filter(None, error.worded(SEARCH_OPTION_NAMES)))) from None


def _locked(lock: threading.Lock, function: Callable[..., T], *args) -> T:
    with lock:
        return function(*args)


def _record_or_none(index: Any, path: str):
    try:
        return index.record_of_path(path)
    except KeyError:
        return None


class _upload_errors:
    """Turns an ImageError about the scratch file into a 400 that speaks of the upload, not the file."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, traceback) -> bool:
        if isinstance(exc, ImageError) and exc.source == self.path:
            raise RequestRejected(400, f"the uploaded image cannot be used: {exc.reason}") from None
        return False


def _thumbnail(path: str, size: int) -> bytes:
    decoded = decode(path, min_short_side=size)  # JPEGs decode reduced: fast for large photos
    image = decoded.image
    # The shape comes from the full size: a reduced decode has already rounded it once.
    width, height = decoded.original_size
    if min(width, height) > size:
        scale = size / min(width, height)
        if width <= height:
            target = (size, max(1, round(height * scale)))
        else:
            target = (max(1, round(width * scale)), size)
        image = image.resize(target, Image.BILINEAR, reducing_gap=3.0)
    elif image.size != (width, height):
        image = decode(path).image
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _confidence_image(confidence: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(np.clip(confidence, 0, 1) * 255).astype(np.uint8), "L")


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _colorized_json(done: dict, session_id: str) -> dict:
    result = done["result"]
    return {"image": _data_url(_png(result.image)),
            "confidence": _data_url(_png(_confidence_image(result.confidence))),
            "width": result.image.width, "height": result.image.height, "method": result.method,
            "seconds": round(result.seconds, 3), "mean_confidence": round(float(result.confidence.mean()), 4),
            "references": done["references"], "notes": list(result.notes),
            "hints": [hint.to_dict() for hint in result.hints], "uses_hints": done["session"].uses_hints,
            "session": session_id}


class _ByteCache:
    """A least-recently-used cache of byte strings, bounded by their total size; safe across threads."""

    def __init__(self, budget: int):
        self.budget = budget
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple, value: bytes) -> None:
        if len(value) > self.budget:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._size += len(value)
            while self._size > self.budget:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)


# -- errors: always {"error": "..."} -------------------------------------------------------------
def _status_of(exc: Exception) -> int:
    if isinstance(exc, RequestRejected):
        return exc.status
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, IndexStateError):
        return 409
    if isinstance(exc, ColorizeError):
        return 422
    if isinstance(exc, BackboneError):
        return 503
    return 400  # ImageError, other RefsearchErrors, ValueError: something wrong with what was asked


def _add_error_handlers(app: FastAPI) -> None:
    async def library_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(_status_of(exc), str(exc))

    for kind in (RequestRejected, RefsearchError, ImageError, ColorizeError, BackboneError, ValueError):
        app.add_exception_handler(kind, library_error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        for error in errors:
            if tuple(error.get("loc", ()))[:1] == ("path",):  # /api/images/abc names no image
                return _error(404, f"no image with id {error.get('input')!r} in this index")
        return _error(400, "; ".join(_describe_validation(error) for error in errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if exc.status_code != 404 else f"nothing at {request.url.path}"
        return _error(exc.status_code, str(message), exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error ({type(exc).__name__}); the server's log has the details")


def _describe_validation(error: dict) -> str:
    where = [str(part) for part in error.get("loc", ()) if part not in ("query", "body", "path", "header")]
    name = ".".join(where) or "request"
    if error.get("type") == "missing" and name == "image":
        return "send the photo as a multipart file field named 'image'"
    return f"{name}: {error.get('msg', 'invalid')}"


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _SecurityHeaders:
    """nosniff on every answer: an indexed file is only ever what its type says."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-content-type-options", b"nosniff")]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
