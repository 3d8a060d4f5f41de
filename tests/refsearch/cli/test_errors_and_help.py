"""How the command line reports errors (a user's problem in two lines, a bug with its traceback), and that
--help is cheap: no heavy library is imported for it, and every option is explained."""
from __future__ import annotations

import errno
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import refsearch
from refsearch import search
from refsearch.cli import app, colorize_command, curation_commands
from refsearch.errors import IndexStateError, RefsearchError

HEAVY = ("torch", "faiss", "numpy", "PIL", "colorize")


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, check=False)


def _open_raising(monkeypatch, error: BaseException) -> None:
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(search.Index, "open", broken)


def test_a_refsearch_error_prints_its_message_and_hint_and_exits_2(monkeypatch, tmp_path):
    _open_raising(monkeypatch, IndexStateError("the index is upside down", "turn it over"))
    result = run("dedup", "--index", tmp_path / "x.index")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == "error: the index is upside down\nhint: turn it over\n"


def test_without_a_hint_one_line(monkeypatch, tmp_path):
    _open_raising(monkeypatch, RefsearchError("nothing to see"))
    result = run("dedup", "--index", tmp_path / "x.index")
    assert (result.exit_code, result.stderr) == (2, "error: nothing to see\n")


def test_an_os_error_about_the_users_file_is_one_line(monkeypatch, tmp_path):
    _open_raising(monkeypatch, FileNotFoundError(errno.ENOENT, "No such file or directory", "photos/x.jpg"))
    result = run("dedup", "--index", tmp_path / "x.index")
    assert (result.exit_code, result.stderr) == (2, "error: photos/x.jpg: no such file or directory\n")


@pytest.mark.parametrize("bug", [ZeroDivisionError("division by zero"), TypeError("bad operand"),
                                 OSError(errno.EIO, "Input/output error"), RuntimeError("inconsistent")])
def test_a_library_bug_is_not_dressed_up_as_a_user_error(monkeypatch, tmp_path, bug):
    _open_raising(monkeypatch, bug)
    result = run("dedup", "--index", tmp_path / "x.index")
    assert result.exit_code == 1
    assert result.exception is bug
    assert "error:" not in result.stderr


def test_a_library_bug_exits_1_with_its_traceback(tmp_path):
    done = _python(f"""
        import sys
        import refsearch.search

        def broken(*args, **kwargs):
            return 1 / 0

        refsearch.search.Index.open = broken
        from refsearch.cli import main
        sys.argv = ["refsearch", "dedup", "--index", {str(tmp_path / "x.index")!r}]
        main()
        """)
    assert done.returncode == 1, done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "error:" not in done.stderr


def test_the_command_line_imports_no_heavy_library():
    done = _python(f"""
        import sys
        import refsearch.cli
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


@pytest.mark.parametrize("command", [[], ["build-index"], ["query"], ["colorize"], ["dedup"], ["info"]])
def test_help_imports_no_heavy_library(command):
    done = _python(f"""
        import sys
        from refsearch.cli import app
        try:
            app({[*command, "--help"]!r})
        except SystemExit as exit:
            assert exit.code == 0, exit.code
        print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
        """)
    assert done.returncode == 0, done.stderr
    assert "Usage: " in done.stdout
    assert done.stderr == "[]\n"


def test_the_package_names_are_imported_on_first_use():
    done = _python(f"""
        import sys
        import refsearch
        before = sorted(m for m in {HEAVY!r} if m in sys.modules)
        config = refsearch.IndexConfig()
        light = sorted(m for m in {HEAVY!r} if m in sys.modules)
        index = refsearch.Index
        print(before, light, config.backbone, index.__module__, "torch" in sys.modules)
        """)
    assert done.returncode == 0, done.stderr
    # the reader loads the network only when a query needs it
    assert done.stdout == "[] [] efficientnet-lite2 refsearch.search False\n"


def test_every_public_name_resolves():
    assert sorted(refsearch.__all__) == sorted([*refsearch._LAZY_NAMES, "__version__"])
    for name in refsearch.__all__:
        assert getattr(refsearch, name) is not None, name
        assert name in dir(refsearch)
    assert refsearch.build_index.__module__ == "refsearch.build"
    assert issubclass(refsearch.ImageError, refsearch.RefsearchError)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        refsearch.nope  # noqa: B018


def test_the_constants_repeated_in_the_command_line_agree_with_the_library():
    import colorize
    from colorize.api import MAX_SATURATION
    from refsearch import curation
    from refsearch.adapt import AdaptSettings
    from refsearch.cli import common
    from refsearch.images import DEFAULT_MAX_PIXELS
    from refsearch.server import ServerSettings

    assert curation_commands.CANDIDATE_THRESHOLD == curation.CANDIDATE_THRESHOLD
    assert curation_commands.EXPORT_MODES == curation.EXPORT_MODES
    assert curation_commands.EXPORT_LAYOUTS == curation.EXPORT_LAYOUTS
    assert colorize_command.DEFAULT_METHOD == colorize.DEFAULT_METHOD
    assert colorize_command.MAX_SATURATION == MAX_SATURATION
    assert common.DEFAULT_MAX_PIXELS == DEFAULT_MAX_PIXELS == ServerSettings().max_pixels
    defaults = {param.name: param.default for param in typer.main.get_command(app).commands["adapt"].params}
    settings = AdaptSettings()
    assert (defaults["epochs"], defaults["batch_size"], defaults["learning_rate"]) == (
        settings.epochs, settings.batch_size, settings.learning_rate)


def test_every_command_and_option_is_explained():
    group = typer.main.get_command(app)
    assert group.commands
    for name, command in group.commands.items():
        assert (command.help or "").strip(), name
        for param in command.params:
            if param.name != "help":
                assert (getattr(param, "help", None) or "").strip(), f"{name} {param.name}"
        result = run(name, "--help")
        assert result.exit_code == 0 and "Usage: " in result.stdout, (name, result.output)


def test_help_shows_a_value_type_for_options_that_take_one_and_none_for_flags():
    group = typer.main.get_command(app)
    for name in ["", *group.commands]:
        text = run(*filter(None, [name]), "--help").stdout
        assert "<bool>" not in text, name
    assert "<path>" in run("query", "--help").stdout  # --jsonl takes one


def test_the_commands_the_readme_says_take_a_report_take_it():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    bullet = next(block for block in readme.split("\n- ") if block.startswith("**dedup**"))
    before_report = bullet.split("--report", 1)[0]
    named = re.findall(r"\*\*([a-z-]+)\*\*", before_report)
    assert named
    group = typer.main.get_command(app)
    for name in named:
        assert "report" in {param.name for param in group.commands[name].params}, name
