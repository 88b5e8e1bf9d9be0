"""Branch envs as environments: derived from an env of mlinfra.toml, recorded in the state when
first brought up (with the serving port they keep for life), forgotten once destroyed."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .._durations import parse_duration
from .._identity import current_user, git_state
from ..config._models import BRANCH_SEPARATOR, EnvSettings, RegistrySettings
from ..errors import ConfigError
from ..state import BranchEnvRecord, SqliteStateStore, open_state
from ._clock import now
from ._names import branch_env_name, normalise_branch

if TYPE_CHECKING:
    from ..config import Branch, Environment, Project

__all__ = [
    "branch_environment",
    "choose_port",
    "claim",
    "creator",
    "forget",
    "of_record",
    "recorded",
    "state_of",
]

_CI_ACTORS = ("GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILDKITE_BUILD_CREATOR", "BUILD_REQUESTEDFOR")


def branch_environment(project: Project, name: str, branch: str | None) -> Environment:
    """`branch`'s env derived from env `name`; without `branch`, the branch env named `name`
    (`dev--feature-x-217d2bf5`), which must have been brought up."""
    if branch is None:
        record = recorded(project, name)
        if record is None:
            raise ConfigError(
                f"no branch env {name!r} in {project.state_dir}: `mlinfra envs` lists them; "
                "`mlinfra up --env ENV --branch BRANCH` makes one"
            )
        return of_record(project, record)
    if BRANCH_SEPARATOR in name:
        raise ConfigError(
            f"--env {name!r} names a branch env already; drop --branch, or give the env it "
            "derives from with --env"
        )
    project.environment(name)  # an unknown env is refused here
    branch_name = normalise_branch(branch)
    record = recorded(project, branch_env_name(name, branch_name))
    if record is not None and record.branch != branch_name:
        raise ConfigError(
            f"branches {record.branch!r} and {branch_name!r} both make env {record.stack!r}; "
            f"destroy that env first (`mlinfra destroy --env {record.stack} --delete-data`)"
        )
    return _derived(project, name, branch_name, record)


def recorded(project: Project, stack: str) -> BranchEnvRecord | None:
    with state_of(project) as store:
        return store.branch_env(stack)


def claim(env: Environment) -> Environment:
    """Record the branch env as it is brought up: made now with a port of its own if new (free
    now, held by no other branch env), else its commit and last up updated; its port stays."""
    branch = _branch_of(env)
    project = env.project
    commit, _ = git_state(project.root, untracked=False)
    at = now()
    draft = BranchEnvRecord(
        stack=env.name,
        base=branch.base,
        branch=branch.name,
        port=0,
        commit=commit or "",
        creator=creator(),
        created_at=at,
        updated_at=at,
        ttl_seconds=parse_duration(project.config.preview.ttl, what="preview.ttl"),
    )
    host = env.settings.serving.host
    with state_of(project) as store:
        record = store.claim_branch_env(
            draft, lambda taken: choose_port(project, env.name, host, taken)
        )
    return _derived(project, branch.base, branch.name, record)


def forget(env: Environment) -> None:
    """After a destroy that deleted everything: drop the branch env's record (and with it its
    port) and whatever is left of its folder."""
    _branch_of(env)
    with state_of(env.project) as store:
        store.forget_stack(env.name)
    shutil.rmtree(env.env_dir, ignore_errors=True)


def choose_port(project: Project, stack: str, host: str, taken: set[int]) -> int:
    """A serving port of `preview.port_range` that is free now and that neither another branch
    env (`taken`) nor an env of mlinfra.toml uses; tried from a hash of the env's name on."""
    from ..providers.local._ports import port_free, spread_ports

    first, last = project.config.preview.port_range
    reserved = taken | {settings.serving.port for settings in project.config.env.values()}
    try:
        for port in spread_ports(f"{project.name}/{stack}", range(first, last + 1)):
            if port not in reserved and port_free(host, port):
                return port
    except OSError as exc:
        raise ConfigError(
            f"serving.host {host!r} cannot be listened on here: {exc.strerror or exc}"
        ) from exc
    raise ConfigError(
        f"no free port in preview.port_range {first}-{last} ({len(taken)} held by branch envs); "
        "widen it in mlinfra.toml, or `mlinfra gc` expired branch envs"
    )


def creator() -> str:
    """Who makes a branch env: the CI's user who pushed when there is one, else the OS user."""
    return next((os.environ[key] for key in _CI_ACTORS if os.environ.get(key)), current_user())


@contextmanager
def state_of(project: Project) -> Iterator[SqliteStateStore]:
    store = open_state(project.state_dir)
    try:
        yield store
    finally:
        store.close()


def of_record(project: Project, record: BranchEnvRecord) -> Environment:
    return _derived(project, record.base, record.branch, record)


def _derived(
    project: Project, base: str, branch: str, record: BranchEnvRecord | None
) -> Environment:
    """The branch env: its base's settings but for its own port and its own registry (a
    preview never writes to a registry another env uses)."""
    from ..config import Branch, Environment

    stack = branch_env_name(base, branch)
    # a base env since dropped from mlinfra.toml still names the engine its branch envs use
    settings = project.config.env.get(base) or EnvSettings()
    if record is not None:
        port = record.port
    else:  # not up yet: the port it would be given now, for `preview`
        with state_of(project) as store:
            taken = {known.port for known in store.branch_envs()}
        port = choose_port(project, stack, settings.serving.host, taken)
    derived = settings.model_copy(
        update={
            "serving": settings.serving.model_copy(update={"port": port}),
            "registry": RegistrySettings(),
        }
    )
    return Environment(project=project, name=stack, settings=derived, branch=Branch(branch, base))


def _branch_of(env: Environment) -> Branch:
    if env.branch is None:
        raise ConfigError(f"env {env.name!r} is not a branch env")
    return env.branch
