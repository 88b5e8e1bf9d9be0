"""`mlinfra init`: a new project that works at once, with its own copy of the stack program."""

from __future__ import annotations

import json
import re
import socket
import tomllib

import pytest
from conftest import ROOT, run_cli

from mlinfra.scaffold import PORT_RANGE, project_ports

EXAMPLES = {"classification": "iris", "regression": "diabetes"}


def announced_ports(stdout: str) -> dict[str, int]:
    """The ports `init` says it chose: `serving ports: dev 21234, staging 21235`."""
    listed = re.search(r"serving ports: (.+)", stdout)
    assert listed, stdout
    return {env: int(port) for env, port in re.findall(r"(\w+) (\d+)", listed.group(1))}


def written_ports(project) -> dict[str, int]:  # noqa: ANN001 - a Path
    config = tomllib.loads((project / "mlinfra.toml").read_text())
    return {env: settings["serving"]["port"] for env, settings in config["env"].items()}


@pytest.mark.slow
@pytest.mark.parametrize("template", ["classification", "regression"])
def test_each_template_comes_up_trains_evaluates_and_goes(tmp_path, template):
    result = run_cli("init", "my-project", "--template", template, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    project = tmp_path / "my-project"
    assert sorted(p.name for p in project.iterdir()) == [
        ".gitignore",
        "mlinfra.toml",
        "model.py",
        "stacks",
    ]
    program = (project / "stacks" / "__main__.py").read_text()
    assert program == (ROOT / "stacks" / "__main__.py").read_text()
    example = ROOT / "examples" / EXAMPLES[template]
    assert (project / "model.py").read_text() == (example / "model.py").read_text()
    text = (project / "mlinfra.toml").read_text()
    assert "#" not in text and "example" not in text  # written for this project, not copied
    config = tomllib.loads(text)
    assert config["project"] == {"name": "my-project", "stack": "stacks"}
    original = tomllib.loads((example / "mlinfra.toml").read_text())
    assert config["models"] == original["models"]
    ports = written_ports(project)
    for env, settings in original["env"].items():
        settings["serving"]["port"] = ports[env]
    assert config["env"] == original["env"]
    assert announced_ports(result.stdout) == ports
    model = EXAMPLES[template]
    try:
        up = run_cli("up", "--env", "dev", "--yes", cwd=project, timeout=120)
        assert up.returncode == 0, up.stderr
        outputs = json.loads(run_cli("outputs", "--env", "dev", "--json", cwd=project).stdout)
        assert outputs["serving_url"] == f"http://127.0.0.1:{ports['dev']}"
        assert outputs["registry_path"].startswith(str(project))
        trained = run_cli(
            "train", "--env", "dev", "--search", "none", "--json", cwd=project, timeout=120
        )
        assert trained.returncode == 0, trained.stderr
        version = json.loads(trained.stdout)
        assert (version["model"], version["version"]) == (model, 1)
        evaluated = run_cli("evaluate", "1", "--env", "dev", "--json", cwd=project, timeout=120)
        assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
        report = json.loads(evaluated.stdout)
        assert report["passed"] and "passed" in {gate["status"] for gate in report["gates"]}
        assert set(report["slices"]) == set(config["models"][model]["slices"])
    finally:
        destroyed = run_cli("destroy", "--env", "dev", "--yes", cwd=project, timeout=120)
        assert destroyed.returncode == 0, destroyed.stderr


def test_projects_side_by_side_get_different_free_ports_from_their_names(tmp_path):
    for folder, name in (("one", "churn"), ("two", "fraud"), ("again", "churn")):
        assert run_cli("init", folder, "--name", name, cwd=tmp_path).returncode == 0
    one, two, again = (written_ports(tmp_path / f) for f in ("one", "two", "again"))
    assert set(one) == set(two) == {"dev", "staging", "prod"}
    assert not set(one.values()) & set(two.values())
    assert again == one  # the same name gives the same ports while they are free
    for port in [*one.values(), *two.values()]:
        assert port in PORT_RANGE


def test_a_port_in_use_at_init_is_skipped_for_the_next(tmp_path):
    wanted = project_ports("busy", {"dev": "127.0.0.1"})["dev"]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", wanted))
        holder.listen()
        result = run_cli("init", "busy", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ports = written_ports(tmp_path / "busy")
    assert wanted not in ports.values()
    assert ports["dev"] == PORT_RANGE[(PORT_RANGE.index(wanted) + 1) % len(PORT_RANGE)]
    assert f"dev {ports['dev']}, staging {ports['staging']}" in result.stdout


def test_help_lists_the_templates_and_a_wrong_one_is_refused_naming_them(tmp_path):
    shown = run_cli("init", "--help", cwd=tmp_path)
    assert shown.returncode == 0 and "classification|regression" in shown.stdout
    assert "[default: classification]" in " ".join(shown.stdout.split())
    unknown = run_cli("init", "fresh", "--template", "mnist", cwd=tmp_path)
    assert unknown.returncode == 2 and "'mnist' is not one of" in unknown.stderr
    assert "'classification', 'regression'" in unknown.stderr
    assert not (tmp_path / "fresh").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["taken"], "taken is not empty; choose a new directory"),
        (["notes.txt"], "notes.txt is a file; choose a new directory"),
        (["notes.txt/project"], "cannot create a project in notes.txt/project: Not a directory"),
        (["new", "--name", "Bad Name"], "--name 'Bad Name': use lowercase letters, digits"),
    ],
    ids=["not-empty", "a-file", "unwritable", "bad-name"],
)
def test_init_that_cannot_work_says_why_in_one_line_and_leaves_things_as_they_were(
    tmp_path, args, message
):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    (tmp_path / "notes.txt").write_text("mine")
    refused = run_cli("init", *args, cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1
    assert message in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "taken"]
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"
