"""The Ray engines joining a cluster started apart from the test (`ray start --head`, with token
authentication, Ray's default), from `refsearch` processes that join it by --address or by RAY_ADDRESS:
the build equals a local build, the batch query writes the local engine's lines, the cluster outlives
the runs that joined it, a process without the cluster's token gets an error line, and a run given no
address starts a Ray of its own instead of joining the cluster. The processes run the real network:
another process does not know the test backbones."""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray engine's tests need the [ray] extra")
from typer.testing import CliRunner  # noqa: E402

import refsearch  # noqa: E402
from refsearch.cli import app  # noqa: E402

RAY = Path(sys.executable).parent / "ray"
AUTH = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(**settings: str) -> dict:
    """This process's environment without Ray's authentication settings, plus `settings`."""
    return {**{name: value for name, value in os.environ.items() if name not in AUTH}, **settings}


@pytest.fixture(scope="module")
def cluster():
    """(address, the environment of a process that holds the cluster's token). `--block` ties the cluster
    to the `ray start` process, so that stopping it stops this cluster alone, not any other Ray here."""
    if not RAY.exists():
        pytest.skip(f"no `ray` command beside {sys.executable}")
    with_token = _environment(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    address = f"127.0.0.1:{_free_port()}"
    head = subprocess.Popen([str(RAY), "start", "--head", f"--port={address.split(':')[1]}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats", "--block"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=with_token)
    try:
        deadline = time.monotonic() + 120
        while not _listening(address):
            assert head.poll() is None, "ray start --head exited"
            assert time.monotonic() < deadline, "the cluster did not come up in 2 minutes"
            time.sleep(1)
        yield address, with_token
    finally:
        head.terminate()
        head.wait(timeout=120)
        for _ in range(30):  # its processes end after it
            if not _listening(address):
                break
            time.sleep(1)


def _listening(address: str) -> bool:
    host, port = address.split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def _status(address: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(RAY), "status", f"--address={address}"], capture_output=True, text=True, env=env,
                          timeout=60)


def _refsearch(*arguments, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "refsearch", *map(str, arguments)], capture_output=True, text=True,
                          env=env, timeout=300)


def _lines(path: Path) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        line.pop("forward_ms"), line.pop("search_ms")
    return lines


def _assert_same_answers(got: list[dict], want: list[dict]) -> None:
    """The same lines but for the last digit of a score: numpy sums in another process, on other thread
    counts, may round the other way."""
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert {**a, "results": None} == {**b, "results": None}
        assert [r["path"] for r in a["results"]] == [r["path"] for r in b["results"]]
        for x, y in zip(a["results"], b["results"]):
            assert {key: value for key, value in x.items() if not isinstance(value, float)} == \
                   {key: value for key, value in y.items() if not isinstance(value, float)}
            assert all(abs(x[key] - y[key]) <= 2e-5 for key, value in x.items() if isinstance(value, float))


def test_runs_join_a_cluster_by_address_or_ray_address_and_leave_it_running(tmp_path, copy_photos, cluster):
    address, with_token = cluster
    photos = copy_photos(tmp_path / "photos", 4)
    built = _refsearch("build-index", tmp_path / "photos", "-o", tmp_path / "ray.index", "--engine", "ray",
                       "--address", address, "--actors", "1", "--json", "-q", env=with_token)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["added"] == 4
    local = CliRunner().invoke(app, ["build-index", str(tmp_path / "photos"), "-o", str(tmp_path / "local.index"),
                                     "-q"])
    assert local.exit_code == 0, local.output
    with refsearch.Index.open(tmp_path / "ray.index") as on_ray, refsearch.Index.open(tmp_path / "local.index") as here:
        assert ([(r.path, r.label, r.digest) for r in on_ray.records()] ==
                [(r.path, r.label, r.digest) for r in here.records()])

    answered = _refsearch("query", tmp_path / "photos", "--index", tmp_path / "local.index", "-k", "3", "--jsonl",
                          tmp_path / "ray.jsonl", "--engine", "ray", "--actors", "1", "-q",
                          env={**with_token, "RAY_ADDRESS": address})
    assert answered.returncode == 0, answered.stderr
    here = CliRunner().invoke(app, ["query", str(tmp_path / "photos"), "--index", str(tmp_path / "local.index"),
                                    "-k", "3", "--jsonl", str(tmp_path / "local.jsonl"), "-q"])
    assert here.exit_code == 0, here.output
    _assert_same_answers(_lines(tmp_path / "ray.jsonl"), _lines(tmp_path / "local.jsonl"))
    assert len(_lines(tmp_path / "ray.jsonl")) == len(photos)

    status = _status(address, with_token)
    assert status.returncode == 0, status.stderr  # still up after both runs


def test_a_process_without_the_clusters_token_gets_an_error_line(tmp_path, copy_photos, cluster):
    address, _ = cluster
    copy_photos(tmp_path / "photos", 2)
    result = _refsearch("build-index", tmp_path / "photos", "-o", tmp_path / "x.index", "--engine", "ray",
                        "--address", address, "-q", env=_environment(RAY_AUTH_MODE="disabled"))
    assert result.returncode == 2, result.stderr
    error, hint = result.stderr.splitlines()[-2:]
    assert error.startswith(f"error: cannot join the Ray cluster at {address} (")
    assert hint.startswith("hint: check the address") and "RAY_AUTH_MODE=token" in hint


def test_without_an_address_a_run_starts_its_own_ray_rather_than_join_the_clusters(tmp_path, copy_photos, cluster):
    # Ray's own default would join the machine's `ray start` cluster, and fail here for want of its token.
    copy_photos(tmp_path / "photos", 2)
    result = _refsearch("build-index", tmp_path / "photos", "-o", tmp_path / "x.index", "--engine", "ray",
                        "--actors", "1", "--json", "-q", env=_environment())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["added"] == 2


def test_a_ray_batch_query_works_from_the_folder_that_holds_a_clone_named_refsearch(tmp_path, copy_photos,
                                                                                    demo_index_path):
    # There, the folder's `refsearch` (the clone) is an importable namespace package: Ray puts the current
    # folder on its workers' import path, where it must not hide the installed package.
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "refsearch").symlink_to(Path(refsearch.__file__).resolve().parents[1], target_is_directory=True)
    photos = copy_photos(tmp_path / "photos", 2)
    command = Path(sys.executable).with_name("refsearch")
    result = subprocess.run([str(command), "query", str(tmp_path / "photos"), "--index", str(demo_index_path),
                             "-k", "2", "--jsonl", str(tmp_path / "out.jsonl"), "--engine", "ray", "--actors", "1",
                             "-q"], capture_output=True, text=True, env=_environment(), cwd=parent, timeout=300)
    assert result.returncode == 0, result.stderr
    assert sorted(line["query"] for line in _lines(tmp_path / "out.jsonl")) == sorted(str(p.resolve()) for p in photos)
