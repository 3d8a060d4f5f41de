"""`refsearch serve` as a user runs it: a real process on a free loopback port, its URL printed, answering,
stopped by Ctrl-C; and the errors it gives before serving."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

import refsearch.cli  # noqa: F401  (registers the commands)
from refsearch.cli import app


def serve_process(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "refsearch", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_serve_prints_its_url_answers_and_stops_on_ctrl_c(demo_index_path):
    process = serve_process("--index", str(demo_index_path), "--port", "0", "--no-access-log")
    try:
        line = process.stdout.readline()
        assert line.startswith("refsearch serve: http://127.0.0.1:"), (line, process.stderr.read())
        url = line.split()[2]
        assert "37 images" in line
        with urllib.request.urlopen(url + "api/health", timeout=30) as response:
            health = json.load(response)
        assert (health["status"], health["images"], health["backbone"]) == ("ok", 37, "efficientnet-lite2")
        with urllib.request.urlopen(url, timeout=30) as response:
            assert b"<title>refsearch</title>" in response.read()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out.strip() == "stopped"
    assert "Traceback" not in err


def run(*args: str):
    return CliRunner().invoke(app, ["serve", *args])


@pytest.fixture(scope="module")
def own_index(demo_index_path, tmp_path_factory):
    """A copy of the demo index: LMDB refuses to open, twice in one process, the one other tests hold."""
    return Path(shutil.copytree(demo_index_path, tmp_path_factory.mktemp("serve") / "demo.index"))


def test_a_port_in_use_is_an_error_line(own_index):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("--index", str(own_index), "--port", str(port))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert result.stderr.splitlines()[1:] == ["hint: choose another --port or --host"]


def test_a_missing_index_is_an_error_line(tmp_path):
    result = run("--index", str(tmp_path / "none.index"), "--port", "0")
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "no such index" in result.stderr


def test_only_loopback_addresses_are_served_without_a_warning():
    from refsearch.server.runner import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.org")


def test_the_command_line_does_not_import_the_web_packages():
    code = ("import sys, refsearch.cli; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("args, fragment", [(["--port", "70000"], "--port"),
                                            (["--max-upload-mb", "0"], "--max-upload-mb")])
def test_bad_options_are_refused(own_index, args, fragment):
    result = run("--index", str(own_index), *args)
    assert result.exit_code == 2 and fragment in result.stderr


def test_answers_on_a_kept_alive_connection_do_not_wait_for_delayed_acks(served_index):
    # Without TCP_NODELAY on the accepted sockets, each answer after the first on a connection stalls
    # about 40 ms (Linux's shortest delayed ACK) behind Nagle's algorithm.
    import http.client
    from statistics import median
    from urllib.parse import urlsplit

    from refsearch.server import BackgroundServer, create_app

    with BackgroundServer(create_app(served_index)) as url:
        connection = http.client.HTTPConnection("127.0.0.1", urlsplit(url).port, timeout=30)
        seconds = []
        for _ in range(12):
            started = time.perf_counter()
            connection.request("GET", "/api/images/3?size=64")
            response = connection.getresponse()
            assert response.status == 200 and response.read()
            seconds.append(time.perf_counter() - started)
        connection.close()
    assert median(seconds[2:]) < 0.025, seconds
