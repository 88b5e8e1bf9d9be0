"""The real `mlinfra` command in child processes: bad input gets one line and an exit code."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli


def _one_line_error(result, code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t + "\nbroken = \n", "not valid TOML"),
        (lambda t: t.replace("[env.dev]", "[env.dev]\ncolour = 1"), "unknown key 'env.dev.colour'"),
        (
            lambda t: t.replace("serving.port = 8799", 'serving.port = "high"'),
            "env.other.serving.port",
        ),
        (lambda t: t.replace('engine = "embedded"', 'engine = "magic"', 1), "env.dev.engine"),
        (lambda t: t.replace('name = "journal"', 'name = "Bad Name"'), "project.name"),
        (
            lambda t: t.replace("[env.dev]", '[env.dev]\npolicies = { drift = "alert" }'),
            "unknown key 'env.dev.policies'; the keys there are: target, engine, training,",
        ),
        (
            lambda t: t.replace("[env.dev]", '[env.dev]\nkubernetes.namespace = "ml"'),
            'env.dev: a [kubernetes] table needs target = "kubernetes"',
        ),
        (
            lambda t: t.replace("[env.dev]", '[env.dev]\ntarget = "kubernetes"'),
            "env.dev: the embedded engine drives local processes only; a kubernetes env is "
            "applied by the pulumi engine",
        ),
        (
            lambda t: t.replace("[env.dev]", '[env.dev]\npulumi.backend_url = "file:///tmp/x"'),
            "env.dev: pulumi.backend_url is for the pulumi engine; "
            'drop it or set engine = "pulumi"',
        ),
    ],
    ids=[
        "malformed",
        "unknown-key",
        "wrong-type",
        "bad-choice",
        "bad-name",
        "policies-gone",
        "kubernetes-table-on-local",
        "kubernetes-with-embedded-engine",
        "backend-url-unused",
    ],
)
def test_bad_config_gives_one_line_naming_file_and_key(journal_project, edit, expected):
    config = journal_project.root / "mlinfra.toml"
    config.write_text(edit(config.read_text()))
    line = _one_line_error(journal_project.cli("preview"), 2)
    assert str(config) in line and expected in line


def test_unknown_env_lists_the_known_ones(journal_project):
    line = _one_line_error(journal_project.cli("status", "--env", "prod"), 2)
    assert "unknown env 'prod'" in line and "dev, other" in line


def test_no_project_found_says_how_to_make_one(tmp_path):
    line = _one_line_error(run_cli("status", cwd=tmp_path), 2)
    assert "no mlinfra.toml" in line and "mlinfra init" in line


def test_up_without_terminal_or_yes_refuses_and_changes_nothing(journal_project):
    line = _one_line_error(journal_project.cli("up"), 2)
    assert "--yes" in line
    assert list(journal_project.out.iterdir()) == []


def test_destroy_without_yes_refuses(journal_project):
    assert journal_project.cli("up", "--yes").returncode == 0
    _one_line_error(journal_project.cli("destroy"), 2)
    assert len(list(journal_project.out.iterdir())) == 3


def test_read_commands_speak_json(journal_project):
    preview = json.loads(journal_project.cli("preview", "--json").stdout)
    assert preview["counts"] == {"create": 4} and preview["changed"] is True
    assert journal_project.cli("up", "--yes").returncode == 0
    outputs = json.loads(journal_project.cli("outputs", "--json").stdout)
    assert outputs == {"sizes": [5, 5, 5], "token": "[secret]"}
    shown = json.loads(journal_project.cli("outputs", "--json", "--show-secrets").stdout)
    assert shown["token"] == "s3cr3t-output"
    history = json.loads(journal_project.cli("history", "--json").stdout)
    assert history[0]["kind"] == "up" and history[0]["result"] == "succeeded"
    envs = json.loads(journal_project.cli("envs", "--json").stdout)
    assert [e["name"] for e in envs["envs"]] == ["dev", "other"]
    refresh = json.loads(journal_project.cli("refresh", "--json").stdout)
    assert {r["status"] for r in refresh["resources"]} == {"ok"}


def test_refresh_exits_nonzero_when_drifted(journal_project):
    journal_project.cli("up", "--yes")
    (journal_project.out / "f1.txt").unlink()
    result = journal_project.cli("refresh")
    assert result.returncode == 1
    assert "f1: gone" in result.stdout


def test_no_color_is_respected(journal_project):
    result = journal_project.cli("preview", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert result.returncode == 0
    assert "\x1b[3" not in result.stdout, "no foreground colours"


def test_secrets_never_printed_by_up(journal_project):
    result = journal_project.cli("up", "--yes")
    assert result.returncode == 0
    assert "s3cr3t" not in result.stdout + result.stderr


def test_a_broken_stack_program_is_reported_in_one_line(journal_project):
    program = journal_project.root / "stack" / "__main__.py"
    program.write_text(program.read_text() + "\nraise ValueError('boom in the program')\n")
    line = _one_line_error(journal_project.cli("preview"), 5)
    assert "stack program" in line and "ValueError: boom in the program" in line


def test_a_missing_stack_program_names_the_setting(journal_project):
    (journal_project.root / "stack" / "__main__.py").unlink()
    line = _one_line_error(journal_project.cli("preview"), 2)
    assert "no Pulumi program" in line and "stack" in line


def _answer_prompt(project, args: list[str], answer: bytes) -> tuple[int, str]:
    """Run the CLI on a real pseudo-terminal and answer its confirmation prompt."""
    import os
    import subprocess
    import time

    from conftest import MLINFRA, cli_env

    main, terminal = os.openpty()
    process = subprocess.Popen(
        [*MLINFRA, *args],
        cwd=project.root,
        env=cli_env({"MLINFRA_ENV": "dev"}),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 60
    while b"[y/N]" not in seen:
        assert time.monotonic() < deadline, seen.decode(errors="replace")
        seen += os.read(main, 4096)
    os.write(main, answer + b"\n")
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    return process.wait(timeout=60), seen.decode(errors="replace")


def test_up_on_a_terminal_shows_the_plan_and_applies_only_on_yes(journal_project):
    code, shown = _answer_prompt(journal_project, ["up"], b"n")
    assert code == 1 and "+ create" in shown and "to create" in shown
    assert list(journal_project.out.iterdir()) == []
    code, shown = _answer_prompt(journal_project, ["up"], b"y")
    assert code == 0, shown
    assert len(list(journal_project.out.iterdir())) == 3


def test_destroy_on_a_terminal_asks_first(journal_project):
    assert journal_project.cli("up", "--yes").returncode == 0
    code, _ = _answer_prompt(journal_project, ["destroy"], b"n")
    assert code == 1 and len(list(journal_project.out.iterdir())) == 3
    code, shown = _answer_prompt(journal_project, ["destroy"], b"y")
    assert code == 0, shown
    assert list(journal_project.out.iterdir()) == []


def test_interrupted_up_exits_130_and_the_next_up_finishes(journal_project):
    import signal
    import time

    process = journal_project.popen("up", "--yes", env={"SLOW_SECONDS": "0.5"})
    deadline = time.monotonic() + 30
    while not journal_project.journal():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    result = journal_project.cli("up", "--yes")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in journal_project.out.iterdir()) == ["f0.txt", "f1.txt", "f2.txt"]
