"""The CI examples of examples/ci/: valid for GitHub Actions and GitLab CI (their JSON schemas,
vendored by check-jsonschema), calling only commands and options the CLI has; and the GitHub
workflow's `run:` steps run for real, as its jobs would on one self-hosted runner: two pull
requests at once, then one closed, beside a base env that nothing touches."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import typer
import yaml
from _state_rows import state_rows
from conftest import ROOT, cli_env, copy_iris, run_cli

from mlinfra.cli import app
from mlinfra.preview import branch_env_name
from mlinfra.providers.local._ports import port_free

EXAMPLES = ROOT / "examples" / "ci"
GITHUB = EXAMPLES / "github-actions.yml"
GITLAB = EXAMPLES / "gitlab-ci.yml"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _github() -> dict[str, Any]:
    return yaml.safe_load(GITHUB.read_text())


def _gitlab() -> dict[str, Any]:
    return yaml.safe_load(GITLAB.read_text())


def _schema_check(path: Path, schema: str, *extra: str) -> subprocess.CompletedProcess[str]:
    checker = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run(
        [str(checker), "--builtin-schema", schema, *extra, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("example", "schema", "extra", "break_it"),
    [
        (GITHUB, "vendor.github-workflows", (), ("runs-on:", "runs-onn:")),
        (GITLAB, "vendor.gitlab-ci", ("--data-transform", "gitlab-ci"), ("stage:", "stagee:")),
    ],
    ids=["github-actions", "gitlab-ci"],
)
def test_ci_example_validates_against_its_ci_systems_schema(
    tmp_path, example, schema, extra, break_it
):
    checked = _schema_check(example, schema, *extra)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = tmp_path / example.name
    broken.write_text(example.read_text().replace(*break_it))
    assert _schema_check(broken, schema, *extra).returncode != 0, "the check can fail"


def test_github_workflow_previews_pull_requests_destroys_closed_ones_and_collects_nightly():
    workflow = _github()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers["pull_request"]["types"]) >= {"opened", "synchronize", "closed"}
    assert triggers["schedule"][0]["cron"]
    jobs = workflow["jobs"]
    assert "action != 'closed'" in jobs["preview"]["if"]
    assert "action == 'closed'" in jobs["close"]["if"]
    assert "schedule" in jobs["gc"]["if"]
    assert _commands(jobs["preview"]) == ["up", "train", "evaluate", "deploy", "ci summary"]
    assert _commands(jobs["close"]) == ["destroy"]
    assert _commands(jobs["gc"]) == ["gc"]
    summary = next(s for s in jobs["preview"]["steps"] if "ci summary" in s.get("run", ""))
    assert summary["if"] == "${{ !cancelled() }}", "the summary says why when the gates fail"


def test_gitlab_pipeline_previews_merge_requests_stops_them_and_collects_on_schedule():
    pipeline = _gitlab()
    assert pipeline["preview"]["environment"]["on_stop"] == "stop-preview"
    assert pipeline["stop-preview"]["environment"]["action"] == "stop"
    lines = {job: " ; ".join(pipeline[job]["script"]) for job in ("preview", "stop-preview", "gc")}
    assert [c for c in ("up", "train", "evaluate", "deploy") if f"mlinfra {c}" in lines["preview"]]
    assert "mlinfra destroy --yes --delete-data" in lines["stop-preview"]
    assert "mlinfra gc --yes" in lines["gc"]
    assert "ci summary" in pipeline["preview"]["after_script"][0]


def _invocations(text: str) -> list[list[str]]:
    """Every `mlinfra ...` command in a shell script (one that starts a simple command, up to a
    redirection or the next operator), as its arguments."""
    found = []
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        command: list[str] = []
        for token in [*lexer, ";"]:
            if token in (";", "&&", "||", "|", ">", ">>", "&"):
                if command and Path(command[0]).name == "mlinfra":
                    found.append(command[1:])
                command = [] if token not in (">", ">>") else ["(redirected)"]
            else:
                command.append(token)
    return found


def _commands(job: dict[str, Any]) -> list[str]:
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    return [
        " ".join(word for word in args[:2] if not word.startswith("-"))
        if args[0] == "ci"
        else args[0]
        for args in _invocations(runs)
    ]


def _all_ci_commands() -> list[list[str]]:
    runs = [step.get("run", "") for job in _github()["jobs"].values() for step in job["steps"]]
    pipeline = _gitlab()
    for job in pipeline.values():
        if isinstance(job, dict):
            for key in ("before_script", "script", "after_script"):
                runs.extend(job.get(key, []))
    return [args for text in runs for args in _invocations(text)]


def test_ci_examples_call_only_commands_and_options_the_cli_has():
    """Each command line is parsed by the real CLI (typer/click): a misspelt command or option
    fails here, as it would in the pipeline."""
    invocations = _all_ci_commands()
    assert len(invocations) >= 10
    for args in invocations:
        _parse(args)
    with pytest.raises(Exception, match="no-such-option"):
        _parse(["up", "--no-such-option"])


def _parse(args: list[str]) -> None:
    command: Any = typer.main.get_command(app)
    name = "mlinfra"
    while hasattr(command, "get_command"):
        context = command.make_context(name, list(args), resilient_parsing=True)
        sub = command.get_command(context, args[0])
        assert sub is not None, f"no command `mlinfra {' '.join(args)}`"
        name, command, args = f"{name} {args[0]}", sub, args[1:]
    command.make_context(name, list(args))


# -- the GitHub workflow, run ----------------------------------------------------------------


def _run_job(
    job_name: str, *, context: dict[str, str], workspace: Path, env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    """The job's `run:` steps in order, in bash, with its env and working directories, and
    GitHub's `${{ }}` expressions from `context` (an unknown one fails the test). A failed step
    skips the rest but for `if: !cancelled()` ones; the install step is the test's own venv."""
    workflow = _github()
    job = workflow["jobs"][job_name]
    variables = {**workflow.get("env", {}), **job.get("env", {})}
    environment = {key: _expand(str(value), context) for key, value in variables.items()}
    environment.update(env)
    environment["PATH"] = f"{Path(sys.executable).parent}:{cli_env()['PATH']}"
    default_dir = job.get("defaults", {}).get("run", {}).get("working-directory", ".")
    done: list[subprocess.CompletedProcess[str]] = []
    for step in job["steps"]:
        if "run" not in step or step.get("id") == "install":
            continue
        failed = any(result.returncode for result in done)
        if failed and step.get("if") != "${{ !cancelled() }}":
            continue
        folder = workspace / _expand(step.get("working-directory", default_dir), context)
        done.append(
            subprocess.run(
                ["bash", "-e", "-c", _expand(step["run"], context)],
                cwd=folder,
                env=cli_env(environment),
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=300,
            )
        )
    return done


def _expand(text: str, context: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        expression = match.group(1)
        assert expression in context, f"the workflow uses ${{{{ {expression} }}}}"
        return context[expression]

    return _EXPRESSION.sub(value, text)


def _pull_request(number: int, branch: str) -> dict[str, str]:
    return {
        "github.event.repository.name": "iris",
        "github.head_ref": branch,
        "github.event.pull_request.number": str(number),
    }


def _base_snapshot(base: Path, env: dict[str, str]) -> dict[str, Any]:
    """What the base env is: its resources as the state has them, its registry, what it serves."""

    def read(*args: str) -> Any:
        done = run_cli(*args, "--env", "dev", "--json", cwd=base, env=env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    status = read("status")
    return {
        "resources": [(r["urn"], r["id"], r["outputs"]) for r in status["resources"]],
        "history": len(read("history")),
        "models": read("models", "list"),
        "deployment": read("rollout", "status")["deployment"],
    }


def _predict(url: str) -> httpx.Response:
    return httpx.post(f"{url}/invocations", json={"instances": [ROW]}, timeout=10)


def _processes_naming(text: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if text in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


@pytest.mark.slow
def test_github_workflow_steps_preview_two_pull_requests_and_close_one(tmp_path):
    workspace = tmp_path / "runner-workspace"
    state = tmp_path / "var-lib-mlinfra"
    base = workspace / "base"
    workspace.mkdir()
    project = copy_iris(base)
    # Latency is the machine's, not the model's: a loaded CI machine would fail it at random.
    project.set_gates("accuracy >= 0.9", "f1 >= champion - 0.02")
    for number in (1, 2):
        shutil.copytree(base, workspace / f"pr-{number}")
    env = {"MLINFRA_STATE_DIR": str(state)}
    summary_file = tmp_path / "step-summary.md"
    pulls = {1: "feature/one", 2: "fix/Two_Words"}
    names = {number: branch_env_name("dev", branch) for number, branch in pulls.items()}
    try:
        for args in (("up", "--yes"), ("train", "--search", "none"), ("deploy", "latest")):
            done = run_cli(*args, "--env", "dev", cwd=base, env=env, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
        before = _base_snapshot(base, env)

        results: dict[int, list[subprocess.CompletedProcess[str]]] = {}
        seconds: dict[int, float] = {}

        def preview(number: int) -> None:
            started = time.monotonic()
            results[number] = _run_job(
                "preview",
                context=_pull_request(number, pulls[number]),
                workspace=workspace,
                env={**env, "GITHUB_STEP_SUMMARY": str(summary_file)},
            )
            seconds[number] = time.monotonic() - started

        threads = [threading.Thread(target=preview, args=(number,)) for number in pulls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for steps in results.values():
            assert [step.returncode for step in steps] == [0] * 5, [s.stderr for s in steps]
        print(f"preview jobs, two at once: {seconds}")

        listed = json.loads(run_cli("envs", "--json", cwd=base, env=env).stdout)["branch_envs"]
        found = {entry["name"]: entry for entry in listed}
        assert set(found) == set(names.values())
        assert len({entry["port"] for entry in found.values()}) == 2
        for entry in found.values():
            assert entry["status"] == "up" and entry["base"] == "dev"
            assert _predict(entry["url"]).status_code == 200
        written = summary_file.read_text()
        for name in names.values():
            assert f"Preview `{name}`" in written
        assert "dev champion v1" in written and "| `f1 >= champion - 0.02` | ✅ passed" in written
        branch_env = {**env, "MLINFRA_ENV": "dev", "MLINFRA_BRANCH": pulls[2]}
        shown = run_cli("ci", "summary", "--format", "json", cwd=workspace / "pr-2", env=branch_env)
        document = json.loads(shown.stdout)
        assert document["env"] == names[2] and document["url"] == found[names[2]]["url"]
        assert document["update"]["kind"] == "up" and document["update"]["counts"] == {"create": 8}
        assert document["candidate"]["serving"] and document["candidate"]["evaluation"]["passed"]
        assert document["champion"] == {
            "version": 1,
            "metrics": document["candidate"]["evaluation"]["champion_metrics"],
            "measured": "same evaluation",
        }
        assert _base_snapshot(base, env) == before

        closed = found[names[1]]
        env_dir = state / "envs" / names[1]
        steps = _run_job("close", context=_pull_request(1, pulls[1]), workspace=workspace, env=env)
        assert [step.returncode for step in steps] == [0, 0], [s.stderr for s in steps]
        assert _processes_naming(str(env_dir)) == []
        assert port_free("127.0.0.1", closed["port"])
        assert not env_dir.exists() and not (workspace / "pr-1").exists()
        assert set(state_rows(state / "state.db", names[1]).values()) == {0}
        listed = json.loads(run_cli("envs", "--json", cwd=base, env=env).stdout)["branch_envs"]
        assert [entry["name"] for entry in listed] == [names[2]]
        assert _predict(found[names[2]]["url"]).status_code == 200
        assert _base_snapshot(base, env) == before
    finally:
        for name in names.values():
            run_cli(
                "destroy", "--env", name, "--yes", "--delete-data", "--force-unlock",
                cwd=base, env=env, timeout=120,
            )  # fmt: skip
        run_cli("destroy", "--env", "dev", "--yes", "--force-unlock", cwd=base, env=env)
