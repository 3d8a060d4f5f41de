"""Running an app under uvicorn: on a socket bound beforehand (so a port in use is a plain error and port
0 picks a free one), in the foreground until Ctrl-C, or in a background thread for tests and benches."""
from __future__ import annotations

import ipaddress
import socket
import threading
import time

import uvicorn


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one). Raises OSError when it cannot bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Naming the protocol matters: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and
    # without it each answer on a kept-alive connection waits about 40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _config(app, log_level: str, access_log: bool) -> uvicorn.Config:
    # One process and one event loop: the app serialises the network itself, and the index is opened once.
    return uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="off",
                          timeout_graceful_shutdown=5)


def serve(app, sock: socket.socket, *, log_level: str = "info", access_log: bool = True) -> None:
    """Serve until interrupted: Ctrl-C (or SIGTERM) finishes the requests in flight, then returns."""
    server = uvicorn.Server(_config(app, log_level, access_log))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn raises the captured Ctrl-C again once it has shut down gracefully
    finally:
        sock.close()


class BackgroundServer:
    """`with BackgroundServer(app) as url:` serves app on a free loopback port in a daemon thread."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"):
        self.sock = listen(host, port)
        self.url = url_of(self.sock)
        self.server = uvicorn.Server(_config(app, log_level, access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="refsearch-serve")

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
