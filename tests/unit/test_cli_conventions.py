"""The ``infoshare`` command's conventions: version, exit codes, one-line errors, ``--home``."""

from __future__ import annotations

from importlib.metadata import version

import click
import pytest
from click.testing import CliRunner

from broker.errors import TopologyError
from infoshare.cli import EXIT_ERROR, EXIT_REFUSED, EXIT_USAGE, main


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_version() -> None:
    assert _run("--version") == (0, f"infoshare {version('infoshare')}\n", "")


def test_exit_codes_are_distinct() -> None:
    assert len({0, EXIT_ERROR, EXIT_USAGE, EXIT_REFUSED}) == 4


def test_a_usage_error_exits_2() -> None:
    code, _, err = _run("broker", "init", "--no-such-option")
    assert code == EXIT_USAGE
    assert "No such option" in err


def test_an_error_is_one_line_and_exits_1(tmp_path: object) -> None:
    code, out, err = _run("broker", "log-key", "--home", "/nonexistent/broker")
    assert code == EXIT_ERROR
    assert out == ""
    assert err.startswith("error: /nonexistent/broker/broker.json not found")
    assert err.count("\n") == 1


@pytest.fixture
def failing_command() -> click.Command:
    @click.command("fail-for-test")
    @click.argument("what")
    def fail(what: str) -> None:
        if what == "project":
            raise TopologyError("management API at https://rabbitmq-1:15671 unreachable")
        raise RuntimeError("a bug")

    main.add_command(fail)
    yield fail
    del main.commands["fail-for-test"]


def test_project_errors_escaping_a_command_are_one_line(failing_command: click.Command) -> None:
    assert _run("fail-for-test", "project") == (
        EXIT_ERROR, "", "error: management API at https://rabbitmq-1:15671 unreachable\n")


def test_unexpected_errors_are_one_line_unless_verbose(failing_command: click.Command) -> None:
    code, _, err = _run("fail-for-test", "bug")
    assert (code, err) == (EXIT_ERROR, "error: unexpected RuntimeError; run with -v to see "
                                       "where\n")
    verbose = CliRunner().invoke(main, ["-v", "fail-for-test", "bug"])
    assert isinstance(verbose.exception, RuntimeError)


def _options(command: click.Command) -> set[str]:
    found = {opt for p in command.params for opt in getattr(p, "opts", [])}
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            found |= _options(sub)
    return found


@pytest.mark.parametrize("group", ["broker", "node"])
def test_home_is_the_one_spelling_of_a_parts_directory(group: str) -> None:
    options = _options(main.commands[group])
    assert "--home" in options
    assert not options & {"--data-dir", "--dir", "--deployment"}
