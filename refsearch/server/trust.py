"""Which requests the server answers: it trusts no other web page.

- **Host.** A page on another site whose name its owner points at 127.0.0.1 (DNS rebinding) is, for the
  browser, its own origin: it could read every answer. Its requests carry its own name in `Host`, so only
  the names of the address the server is bound to, loopback's, and those allowed by `--allow-host` are
  answered. Bound to every address (0.0.0.0, ::), an address literal is accepted too: nobody can rebind a
  literal.
- **Origin.** A request that computes (every POST) and comes from a browser page of another origin is
  refused; browsers name the page's origin in `Origin` (clients other than browsers send none).
- **Token.** Bound beyond loopback, every request must carry the server's token: `Authorization: Bearer
  TOKEN`, or `?token=TOKEN` once, after which a cookie for this server carries it (so the page and its
  images work from the URL the command prints).
"""
from __future__ import annotations

import hmac
import ipaddress
import json
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

COOKIE = "refsearch_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# Methods that only read; any other computes or changes something.
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Trust:
    """`bound`: the address the server listens on; `allowed_hosts`: more Host names to answer ("*": any);
    `token`: what every request must carry (None: none needed)."""

    bound: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    token: str | None = None

    def host_allowed(self, host: str) -> bool:
        name = host_name(host)
        if "*" in self.allowed_hosts or name in LOOPBACK_NAMES or name in map(str.lower, self.allowed_hosts):
            return True
        if name == self.bound.lower() and not _is_wildcard(self.bound):
            return True
        return _is_wildcard(self.bound) and _is_address(name)


def host_name(host: str) -> str:
    """The name of a Host header value (or an origin's netloc), without its port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_wildcard(address: str) -> bool:
    return address in ("0.0.0.0", "::", "")


class TrustedRequests:
    """ASGI middleware answering what `trust` refuses with a JSON error: 403 for another host or a
    cross-origin request, 401 for a missing or wrong token."""

    def __init__(self, app, trust: Trust):
        self.app = app
        self.trust = trust

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        host = headers.get("host", "")
        if not self.trust.host_allowed(host):
            await _refuse(send, 403, f"this server does not answer for host {host_name(host) or '(none)'!r}; "
                                     "start it with --allow-host NAME to allow that name")
            return
        given, from_query = self._token(scope, headers)
        if self.trust.token is not None and not (given and hmac.compare_digest(given, self.trust.token)):
            await _refuse(send, 401, "this server needs its token: open the URL it printed when it started "
                                     "(?token=...), or send Authorization: Bearer TOKEN")
            return
        origin = headers.get("origin")
        if scope["method"] not in SAFE_METHODS and origin is not None and not self._same_origin(origin, host):
            await _refuse(send, 403, f"requests from another page ({origin}) are refused")
            return
        if from_query:
            await self.app(scope, receive, self._setting_cookie(send))
        else:
            await self.app(scope, receive, send)

    def _token(self, scope, headers: dict) -> tuple[str | None, bool]:
        """The token the request carries, and whether it came in the query (to be kept in a cookie)."""
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            return authorization[7:].strip(), False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:
            return query["token"][-1], True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header carries no token
            return None, False
        return (cookie[COOKIE].value if COOKIE in cookie else None), False

    def _same_origin(self, origin: str, host: str) -> bool:
        netloc = urlsplit(origin).netloc
        return bool(netloc) and netloc.lower() == host.strip().lower()

    def _setting_cookie(self, send):
        token = self.trust.token

        async def send_with_cookie(message):
            if message["type"] == "http.response.start" and token is not None:
                cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"set-cookie", cookie.encode("latin-1"))]}
            await send(message)

        return send_with_cookie


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
