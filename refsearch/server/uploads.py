"""Uploads: the body-size limit (enforced while the body arrives), the header check that refuses
oversized images before anything decodes them, and the scratch file the library reads the photo from."""
from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, UnidentifiedImageError

# Room in a multipart body for part headers, boundaries and the small form fields beside the file.
MULTIPART_OVERHEAD = 64 * 1024


class RequestRejected(Exception):
    """A request refused with an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def describe_bytes(count: int) -> str:
    return f"{count / (1024 * 1024):.3g} MB"


def check_image_header(data: bytes, max_pixels: int) -> str:
    """The image's format, from its header alone; RequestRejected (400) when it is not an image, (413) when
    it claims more than `max_pixels` pixels. Nothing is decoded here."""
    if not data:
        raise RequestRejected(400, "the uploaded file is empty")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise RequestRejected(400, "the uploaded file is not an image (unrecognised format)") from None
    except Exception as exc:  # Pillow raises many types for malformed headers
        raise RequestRejected(400, f"the uploaded image has an unreadable header ({exc})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise RequestRejected(400, f"the uploaded image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise RequestRejected(413, f"the uploaded image is {width}x{height}, {width * height / 1e6:.1f} "
                                   f"megapixels; this server takes at most {max_pixels / 1e6:g}")
    return image.format or "image"


@contextmanager
def scratch_file(data: bytes) -> Iterator[Path]:
    """The upload as a private temporary file, removed afterwards. The library is given a file, not a
    decoded image, so that a photo searched over HTTP is decoded exactly as `refsearch query` decodes it
    and is recognised (by its bytes) when it is itself in the index."""
    handle, name = tempfile.mkstemp(prefix="refsearch-upload-")
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        yield path
    finally:
        path.unlink(missing_ok=True)


class BodyLimit:
    """ASGI middleware refusing, with 413, request bodies larger than an upload of `max_upload_bytes` can
    make: at once when Content-Length says so, else as soon as the bytes received pass it (a chunked
    upload), whatever the app was doing with them."""

    def __init__(self, app, max_upload_bytes: int):
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.limit = max_upload_bytes + MULTIPART_OVERHEAD

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message):
            nonlocal started
            if exceeded:
                return  # whatever the app answers to a cut-off body, the answer is 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"error": f"the upload is over this server's limit of "
                                    f"{describe_bytes(self.max_upload_bytes)}"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass
