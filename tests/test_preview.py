"""Branch envs on the journal fixture (files for resources, real SQLite state, real `mlinfra`
processes): names, the port each holds, isolation, destroy, `envs` and `gc` on a controlled
clock (MLINFRA_NOW)."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from _state_rows import state_rows
from hypothesis import given, settings
from hypothesis import strategies as st

import mlinfra
from mlinfra.config import load_project
from mlinfra.errors import ConfigError
from mlinfra.preview import (
    DNS_LABEL,
    MAX_NAME,
    branch_env_name,
    branch_slug,
    claim,
    normalise_branch,
)
from mlinfra.providers.local._ports import spread_ports
from mlinfra.tui import Source

DAY = 86400.0
T0 = 1_900_000_000.0  # a fixed "now" for MLINFRA_NOW: 2030-03-17


def _is_branch(text: str) -> bool:
    try:
        normalise_branch(text)
    except ConfigError:
        return False
    return True


branches = st.text(min_size=1, max_size=300).filter(_is_branch)
bases = st.from_regex(r"[a-z]([a-z0-9]|-(?=[a-z0-9])){0,39}", fullmatch=True)


@given(base=bases, branch=branches)
@settings(max_examples=300)
def test_branch_env_names_are_dns_labels_that_keep_the_base(base, branch):
    name = branch_env_name(base, branch)
    assert len(name) <= MAX_NAME and DNS_LABEL.match(name), name
    assert name.startswith(f"{base}--")
    assert name == branch_env_name(base, branch), "stable"


def _lookalike(branch: str, how: str) -> str:
    """A branch that sanitises to the same readable part as `branch`, or nearly."""
    if how == "separators":
        return branch.replace("/", "-") if "/" in branch else branch + "/"
    if how == "case":
        return branch.swapcase() if branch.swapcase() != branch else branch + "X"
    return branch + "-" * 3 if how == "dashes" else branch.ljust(80, "x") + "-tail"


@given(first=branches, second=branches)
@settings(max_examples=300)
def test_two_branches_never_make_one_name(first, second):
    if normalise_branch(first) != normalise_branch(second):
        assert branch_env_name("dev", first) != branch_env_name("dev", second)


@given(branch=branches, how=st.sampled_from(["separators", "case", "dashes", "truncated"]))
@settings(max_examples=300)
def test_branches_that_look_alike_still_make_two_names(branch, how):
    """What sanitising and truncating make equal, the hash keeps apart."""
    other = _lookalike(branch, how)
    if normalise_branch(other) != normalise_branch(branch):
        assert branch_env_name("dev", other) != branch_env_name("dev", branch)


def test_branch_names_read_as_the_branch():
    assert branch_slug("feature/Login_Page").startswith("feature-login-page-")
    assert branch_env_name("dev", "refs/heads/fix/x") == branch_env_name("dev", "fix/x")
    assert branch_env_name("dev", "Fix/X") != branch_env_name("dev", "fix/x"), "git tells apart"
    assert len(branch_slug("日本語")) == 8, "nothing readable: the hash alone"
    long = branch_env_name("a" * 40, "feature/" + "x" * 200)
    assert len(long) == MAX_NAME and long.startswith("a" * 40 + "--feature-")
    with pytest.raises(ConfigError, match="give the branch's name"):
        branch_slug("  ")


def test_env_names_with_a_double_dash_are_refused_in_one_line(journal_project):
    config = journal_project.root / "mlinfra.toml"
    config.write_text(config.read_text().replace("[env.other]", "[env.my--env]"))
    done = journal_project.cli("envs")
    assert done.returncode == 2
    assert "'--' is kept for branch envs" in done.stderr


def test_a_bad_port_range_is_refused(journal_project):
    config = journal_project.root / "mlinfra.toml"
    config.write_text(config.read_text() + "\n[preview]\nport_range = [40000, 30000]\n")
    done = journal_project.cli("envs")
    assert done.returncode == 2 and "preview.port_range" in done.stderr


def _up(project, branch: str, *, at: float | None = None, out: str | None = None):
    """`mlinfra up --branch` in its own output folder (the journal writes fixed file names)."""
    folder = project.out / (out or branch.replace("/", "_"))
    folder.mkdir(exist_ok=True)
    extra = {"OUT_DIR": str(folder)}
    if at is not None:
        extra["MLINFRA_NOW"] = str(at)
    done = project.cli("up", "--yes", "--branch", branch, env=extra)
    assert done.returncode == 0, done.stderr
    return folder


def _envs(project, **env: str) -> dict[str, dict]:
    done = project.cli("envs", "--json", env=env)
    assert done.returncode == 0, done.stderr
    return {found["branch"]: found for found in json.loads(done.stdout)["branch_envs"]}


def test_branch_envs_have_their_own_stack_folder_and_port(journal_project):
    base_out = journal_project.out / "base"
    base_out.mkdir()
    assert journal_project.cli("up", "--yes", env={"OUT_DIR": str(base_out)}).returncode == 0
    base_before = json.loads(journal_project.cli("status", "--json").stdout)["resources"]
    first = _up(journal_project, "feature/a")
    second = _up(journal_project, "feature/b")
    found = _envs(journal_project)
    assert set(found) == {"feature/a", "feature/b"}
    assert found["feature/a"]["port"] != found["feature/b"]["port"]
    for branch, folder in (("feature/a", first), ("feature/b", second)):
        name = found[branch]["name"]
        assert found[branch]["base"] == "dev" and found[branch]["status"] == "up"
        assert 30000 <= found[branch]["port"] <= 32767
        assert sorted(p.name for p in folder.iterdir()) == ["f0.txt", "f1.txt", "f2.txt"]
        status = json.loads(journal_project.cli("status", "--json", "--env", name).stdout)
        assert status["stack"] == name and len(status["resources"]) == 4
    assert json.loads(journal_project.cli("status", "--json").stdout)["resources"] == base_before
    again = _up(journal_project, "feature/a")
    assert _envs(journal_project)["feature/a"]["port"] == found["feature/a"]["port"], "stable"
    assert again == first


def test_a_port_in_use_or_held_by_another_branch_env_is_never_given(journal_project):
    project = load_project(journal_project.root)
    env = project.environment("dev", branch="feature/busy")
    candidates = spread_ports(f"journal/{env.name}", range(30000, 32768))
    wanted = next(candidates)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", wanted))
        holder.listen()
        shown = project.environment("dev", branch="feature/busy").settings.serving.port
        assert shown != wanted, "what `preview` shows skips it too"
        claimed = claim(env)
    assert claimed.settings.serving.port not in (wanted, 0)
    # The port stays the env's, even while nothing listens on it: another env never takes it.
    config = journal_project.root / "mlinfra.toml"
    port = claimed.settings.serving.port
    config.write_text(config.read_text() + f"\n[preview]\nport_range = [{port}, {port + 1}]\n")
    project = load_project(journal_project.root)
    other = claim(project.environment("dev", branch="feature/other"))
    assert other.settings.serving.port == port + 1
    with pytest.raises(ConfigError, match="no free port in preview.port_range"):
        claim(project.environment("dev", branch="feature/third"))


def test_branch_envs_made_at_once_get_distinct_ports(journal_project):
    config = journal_project.root / "mlinfra.toml"
    config.write_text(config.read_text() + "\n[preview]\nport_range = [31000, 31011]\n")
    project = load_project(journal_project.root)
    envs = [project.environment("dev", branch=f"feature/{n}") for n in range(12)]
    ports: list[int] = []
    errors: list[BaseException] = []

    def make(env) -> None:
        try:
            ports.append(claim(env).settings.serving.port)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=make, args=(env,)) for env in envs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(ports) == list(range(31000, 31012))


def test_a_branch_env_is_found_by_its_own_name_once_up(journal_project):
    name = branch_env_name("dev", "feature/a")
    done = journal_project.cli("status", "--env", name)
    assert done.returncode == 2 and "no branch env" in done.stderr and "mlinfra envs" in done.stderr
    not_up = journal_project.cli("outputs", "--json", "--branch", "feature/a")
    assert not_up.returncode == 0 and json.loads(not_up.stdout) == {}
    assert _envs(journal_project) == {}, "reading a branch env does not make one"
    _up(journal_project, "feature/a")
    assert journal_project.cli("status", "--env", name).returncode == 0
    project = mlinfra.open_project(journal_project.root)
    assert Source(project).env_names == ["dev", "other", name], "the TUI lists it"
    both = journal_project.cli("status", "--env", name, "--branch", "feature/a")
    assert both.returncode == 2 and "names a branch env already" in both.stderr
    from_env_var = journal_project.cli("status", "--json", env={"MLINFRA_BRANCH": "feature/a"})
    assert json.loads(from_env_var.stdout)["stack"] == name


def test_destroy_with_delete_data_leaves_no_row_file_or_port(journal_project):
    folder = _up(journal_project, "feature/a")
    name = branch_env_name("dev", "feature/a")
    state_db = journal_project.root / ".mlinfra" / "state.db"
    assert state_rows(state_db, name)["branch_envs"] == 1
    kept = journal_project.cli("destroy", "--yes", "--branch", "feature/a")
    assert kept.returncode == 0, kept.stderr
    assert _envs(journal_project)["feature/a"]["status"] == "down", "kept until told"
    gone = journal_project.cli("destroy", "--yes", "--delete-data", "--branch", "feature/a")
    assert gone.returncode == 0, gone.stderr
    assert "is gone" in gone.stdout
    assert list(folder.iterdir()) == []
    assert set(state_rows(state_db, name).values()) == {0}, "no resource, history or record"
    assert not (journal_project.root / ".mlinfra" / "envs" / name).exists()
    assert _envs(journal_project) == {}


def test_state_dir_can_be_moved_out_of_the_project(journal_project, tmp_path):
    elsewhere = tmp_path / "shared-state"
    _up_env = {"MLINFRA_STATE_DIR": str(elsewhere), "OUT_DIR": str(journal_project.out)}
    done = journal_project.cli("up", "--yes", "--branch", "feature/a", env=_up_env)
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "state.db").is_file()
    assert not (journal_project.root / ".mlinfra" / "state.db").exists()
    assert set(_envs(journal_project, MLINFRA_STATE_DIR=str(elsewhere))) == {"feature/a"}
    assert _envs(journal_project) == {}, "the project's own state knows nothing of it"


def test_gc_destroys_only_expired_branch_envs(journal_project):
    base_out = journal_project.out / "base"
    base_out.mkdir()
    assert journal_project.cli("up", "--yes", env={"OUT_DIR": str(base_out)}).returncode == 0
    old = _up(journal_project, "feature/old", at=T0)
    recent = _up(journal_project, "feature/recent", at=T0 + 6 * DAY)
    later = {"MLINFRA_NOW": str(T0 + 7 * DAY + 3600)}
    listed = _envs(journal_project, **later)
    assert listed["feature/old"]["expired"] and not listed["feature/recent"]["expired"]

    dry = journal_project.cli("gc", "--dry-run", "--json", env=later)
    assert dry.returncode == 0, dry.stderr
    assert [e["branch"] for e in json.loads(dry.stdout)["branch_envs"]] == ["feature/old"]
    assert len(list(old.iterdir())) == 3, "a dry run changes nothing"

    refused = journal_project.cli("gc", env=later)
    assert refused.returncode == 2 and "--yes" in refused.stderr, "no terminal to confirm on"
    done = journal_project.cli("gc", "--yes", "--json", env=later)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(e["branch"], e["outcome"]) for e in report["branch_envs"]] == [
        ("feature/old", "destroyed")
    ]
    assert report["branch_envs"][0]["deleted"] == 4
    assert list(old.iterdir()) == [] and len(list(recent.iterdir())) == 3
    assert set(_envs(journal_project, **later)) == {"feature/recent"}
    assert sorted(p.name for p in base_out.iterdir()) == ["f0.txt", "f1.txt", "f2.txt"]
    assert len(json.loads(journal_project.cli("status", "--json").stdout)["resources"]) == 4

    everything = journal_project.cli("gc", "--yes", "--older-than", "1h", env=later)
    assert everything.returncode == 0, everything.stderr
    assert "destroyed 1 of 1" in everything.stdout
    assert _envs(journal_project) == {}


def test_gc_reports_a_branch_env_it_cannot_destroy_and_goes_on(journal_project):
    from mlinfra.state import open_state

    _up(journal_project, "feature/locked", at=T0)
    _up(journal_project, "feature/free", at=T0)
    store = open_state(journal_project.root / ".mlinfra")
    store.acquire_lock(branch_env_name("dev", "feature/locked"), "mlinfra up (a test holds it)")
    try:
        later = {"MLINFRA_NOW": str(T0 + 30 * DAY)}
        done = journal_project.cli("gc", "--yes", env=later)
        assert done.returncode == 4, done.stdout + done.stderr  # the lock's exit code
        assert "could not be destroyed" in done.stdout and "locked" in done.stdout
        assert set(_envs(journal_project)) == {"feature/locked"}
    finally:
        store.release_lock(branch_env_name("dev", "feature/locked"))
        store.close()


def test_a_branch_env_loads_the_data_of_its_base(tmp_path):
    from mlinfra.training._definition import _call_loader

    seen: list[str] = []

    def load(env: str):  # noqa: ANN202 - a user's loader
        seen.append(env)
        return [[1.0], [2.0]], [0, 1]

    _call_loader(load, branch_env_name("staging", "feature/a"), "loader", tmp_path)
    assert seen == ["staging"]


def test_every_command_that_takes_env_takes_branch_from_mlinfra_branch():
    import typer

    from mlinfra.cli import app

    def commands(command, name="mlinfra"):  # noqa: ANN001, ANN202 - click commands
        if hasattr(command, "commands"):
            for sub_name, sub in command.commands.items():
                yield from commands(sub, f"{name} {sub_name}")
        else:
            yield name, command

    checked = []
    for name, command in commands(typer.main.get_command(app)):
        options = {opt: param for param in command.params for opt in param.opts}
        if "--env" in options or name == "mlinfra models promote":
            assert "--branch" in options, f"`{name}` takes --env but not --branch"
            assert options["--branch"].envvar == "MLINFRA_BRANCH", name
            checked.append(name)
    assert len(checked) >= 25 and "mlinfra tui" in checked and "mlinfra ci summary" in checked


def test_the_clock_of_branch_envs_is_mlinfra_now_when_set(monkeypatch):
    from mlinfra.preview import now

    monkeypatch.setenv("MLINFRA_NOW", "2030-01-01T00:00:00Z")
    assert now() == 1893456000.0
    monkeypatch.setenv("MLINFRA_NOW", "1893456000.5")
    assert now() == 1893456000.5
    for wrong, why in (("next week", "ISO 8601"), ("2030-01-01T00:00:00", "time zone")):
        monkeypatch.setenv("MLINFRA_NOW", wrong)
        with pytest.raises(ConfigError, match=why):
            now()
    monkeypatch.delenv("MLINFRA_NOW")
    import time

    assert abs(now() - time.time()) < 5
