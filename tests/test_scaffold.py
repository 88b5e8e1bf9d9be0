"""`mlinfra init`: a new project that works at once, with its own copy of the stack program."""

from __future__ import annotations

import json

from conftest import ROOT, free_port, run_cli


def test_init_creates_a_project_whose_stack_previews_and_comes_up(tmp_path):
    result = run_cli("init", "my-project", cwd=tmp_path)
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
    config = (project / "mlinfra.toml").read_text()
    assert 'name = "my-project"' in config and 'stack = "stacks"' in config
    port = free_port()
    config = config.replace("serving.port = 8701", f"serving.port = {port}")
    (project / "mlinfra.toml").write_text(config)
    preview = run_cli("preview", "--env", "dev", "--json", cwd=project)
    assert json.loads(preview.stdout)["counts"] == {"create": 6}
    try:
        assert run_cli("up", "--env", "dev", "--yes", cwd=project).returncode == 0
        outputs = json.loads(run_cli("outputs", "--env", "dev", "--json", cwd=project).stdout)
        assert outputs["serving_url"] == f"http://127.0.0.1:{port}"
        assert outputs["registry_path"].startswith(str(project))
    finally:
        assert run_cli("destroy", "--env", "dev", "--yes", cwd=project).returncode == 0


def test_init_refuses_a_non_empty_directory_and_unknown_templates(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    refused = run_cli("init", "taken", cwd=tmp_path)
    assert refused.returncode == 2 and "not empty" in refused.stderr
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["notes.txt"]
    unknown = run_cli("init", "fresh", "--template", "mnist", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown template 'mnist'" in unknown.stderr
    assert not (tmp_path / "fresh").exists()
