"""Which requests the server answers: the Host names it is reached by, requests from other pages, and
its token beyond loopback."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from refsearch.server import ServerSettings, create_app
from refsearch.server.trust import Trust, host_name

TOKEN = "a-token-of-thirty-two-characters"


def client(index, base_url: str, **trust) -> TestClient:
    return TestClient(create_app(index, ServerSettings(trust=Trust(**trust))), base_url=base_url)


def photo_upload(query: Path) -> dict:
    return {"image": (query.name, query.read_bytes(), "image/jpeg")}


@pytest.fixture(scope="module")
def query(demo_queries) -> Path:
    return demo_queries[0]


@pytest.mark.parametrize("base_url, bound, allowed, status", [
    ("http://127.0.0.1:8000", "127.0.0.1", (), 200),
    ("http://localhost:8000", "127.0.0.1", (), 200),
    ("http://[::1]:8000", "::1", (), 200),
    ("http://evil.example.com:8000", "127.0.0.1", (), 403),  # a name rebound to 127.0.0.1
    ("http://photos.lan", "127.0.0.1", ("photos.lan",), 200),
    ("http://evil.example.com", "127.0.0.1", ("*",), 200),
    ("http://192.168.1.7:8000", "0.0.0.0", (), 200),  # an address literal cannot be rebound
    ("http://evil.example.com:8000", "0.0.0.0", (), 403),
    ("http://192.168.1.7:8000", "127.0.0.1", (), 403),
])
def test_only_the_bound_address_loopback_and_allowed_names_are_answered(served_index, base_url, bound, allowed,
                                                                        status):
    with client(served_index, base_url, bound=bound, allowed_hosts=allowed) as http:
        answer = http.get("/api/images/0?size=32")
    assert answer.status_code == status, answer.text
    if status == 403:
        assert answer.json()["error"].startswith(f"this server does not answer for host "
                                                 f"'{host_name(base_url.split('//')[1])}'")
        assert "--allow-host" in answer.json()["error"]


def test_a_request_from_another_page_that_computes_is_refused(served_index, query):
    with client(served_index, "http://127.0.0.1:8000") as http:
        foreign = http.post("/api/search?k=2", files=photo_upload(query),
                            headers={"Origin": "http://evil.example.com"})
        assert foreign.status_code == 403 and "another page (http://evil.example.com)" in foreign.json()["error"]
        rebound = http.post("/api/colorize?topk=1", files=photo_upload(query), headers={"Origin": "null"})
        assert rebound.status_code == 403
        own = http.post("/api/search?k=2", files=photo_upload(query), headers={"Origin": "http://127.0.0.1:8000"})
        assert own.status_code == 200 and len(own.json()["results"]) == 2
        scripted = http.post("/api/search?k=2", files=photo_upload(query))  # not a browser: no Origin
        assert scripted.status_code == 200
        assert http.get("/api/health", headers={"Origin": "http://evil.example.com"}).status_code == 200


def test_with_a_token_every_request_carries_it_in_a_header_or_once_in_the_url(served_index):
    with client(served_index, "http://127.0.0.1:8000", token=TOKEN) as http:
        refused = http.get("/api/health")
        assert refused.status_code == 401 and "needs its token" in refused.json()["error"]
        assert http.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/api/health", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        page = http.get(f"/?token={TOKEN}")
        assert page.status_code == 200 and "HttpOnly" in page.headers["set-cookie"]
        assert "SameSite=Strict" in page.headers["set-cookie"]
        assert http.get("/api/images/0?size=32").status_code == 200  # the cookie carries it now
        http.cookies.clear()
        assert http.get("/api/images/0?size=32").status_code == 401
        assert http.get("/api/health?token=wrong").status_code == 401


def test_serving_beyond_loopback_makes_up_a_token_and_prints_it_in_the_url(demo_index_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "refsearch", "serve", "--index", str(demo_index_path),
                                "--host", "0.0.0.0", "--port", "0", "--no-access-log"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        assert line.startswith("refsearch serve: http://0.0.0.0:") and "?token=" in line, (line, process.stderr)
        url = line.split()[2]
        port, token = url.split(":")[2].split("/")[0], url.split("?token=")[1]
        assert len(token) >= 32
        base = f"http://127.0.0.1:{port}/"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "api/health", timeout=30)
        assert refused.value.code == 401
        request = urllib.request.Request(base + "api/health", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert json.load(answer)["status"] == "ok"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert "whoever has the token" in err


def test_a_short_token_is_refused(demo_index_path):
    from typer.testing import CliRunner

    from refsearch.cli import app

    result = CliRunner().invoke(app, ["serve", "--index", str(demo_index_path), "--token", "abc", "--port", "0"])
    assert result.exit_code == 2 and "a token of 3 characters is too easy to guess" in result.stderr
