"""The serving endpoint: `python -m mlinfra.serving` on a port, supervised by supervisord and
health-checked before create or update returns."""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult
from pydantic import Field

from ..._code_paths import CODE_PATH_OPTION, code_path_arguments
from ...errors import ConfigError, DeploymentError
from ._base import AbsolutePath, LocalProvider, LocalResource, ProviderInputs, gone, is_unknown
from ._ports import port_free, port_holder, wait_port_free
from ._supervisor import Supervisor

__all__ = ["ModelServer", "ModelServerArgs", "ModelServerProvider", "server_url"]

HEALTH_PATH = "/v2/health/live"
HEALTH_TIMEOUT = 30.0
TOKEN_FILE = "token"
_FAILED_STATES = {
    "BACKOFF": "it exited while starting",
    "FATAL": "it kept exiting and supervisord gave up",
    "GONE": "supervisord is gone",
}
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class ServerInputs(ProviderInputs):
    run_dir: AbsolutePath
    registry: AbsolutePath
    env: str
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int | None = Field(None, ge=1024)
    token: str | None = None
    code_paths: list[AbsolutePath] = Field(default_factory=list)


class ModelServerProvider(LocalProvider[ServerInputs]):
    """A new run dir, host or port is a new endpoint: replaced, deleting first because the run
    dir (and often the port) cannot be shared. Workers, registry, env, body limit, token and code
    paths are updates: the program restarts under the same supervisord."""

    inputs_model = ServerInputs
    replace_on = frozenset({"run_dir", "host", "port"})
    replace_deletes_first = True

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = self.parse(props)
        supervisor = Supervisor(Path(inputs.run_dir))
        outs = self._adopt(supervisor, inputs) or self._start(supervisor, inputs)
        return CreateResult(id_=inputs.run_dir, outs=outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = self.parse(news)
        supervisor = Supervisor(Path(inputs.run_dir))
        if supervisor.process() is None:
            return UpdateResult(outs=self._start(supervisor, inputs))
        supervisor.write(_command(supervisor, inputs), _files(inputs))
        supervisor.restart()
        _wait_healthy(supervisor, inputs)
        return UpdateResult(outs=self._outputs(supervisor, inputs, healthy=True))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        supervisor = Supervisor(Path(id_))
        if supervisor.process() is None:
            return gone()
        inputs = self.parse({**props, **_running_args(supervisor)})
        healthy = _probe(inputs.host, inputs.port)
        outs = self._outputs(supervisor, inputs, healthy=healthy)
        outs["token_sha256"] = _digest(_read_token(supervisor))
        return ReadResult(id_=id_, outs=outs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        from ...rollout import stop_driver
        from ...serving import deployment_dir

        inputs = self.parse(props)
        # The env's rollout driver reads this server's metrics at this URL: it stops (pausing
        # the rollout for `mlinfra rollout resume`) rather than outlive the server.
        stop_driver(deployment_dir(inputs.registry, inputs.env))
        supervisor = Supervisor(Path(id_))
        supervisor.stop()
        if not wait_port_free(inputs.host, inputs.port, 5):
            holder = port_holder(inputs.port)
            raise DeploymentError(
                f"port {inputs.port} is still held by {holder} after the model server stopped"
            )
        supervisor.remove()

    def comparable(self, props: dict[str, Any]) -> dict[str, Any]:
        values = super().comparable(props)
        values["code_paths"] = values["code_paths"] or []  # absent from older states and inputs
        # Outputs keep only a digest of the token; inputs carry the token itself, if any.
        token = values.pop("token")
        if token is None:
            values["token"] = props.get("token_sha256", "")
        else:
            values["token"] = token if is_unknown(token) else _digest(token)
        return values

    def drifted(self, outs: dict[str, Any]) -> bool:
        return outs.get("healthy") is False

    def _adopt(self, supervisor: Supervisor, inputs: ServerInputs) -> dict[str, Any] | None:
        """A healthy server a killed create started with these very inputs is kept, not doubled."""
        if supervisor.process() is None:
            return None
        try:
            same = supervisor.conf.read_text() == supervisor.render(_command(supervisor, inputs))
        except OSError:
            return None
        if not same or _read_token(supervisor) != inputs.token:
            return None
        if not _probe(inputs.host, inputs.port):
            return None
        return self._outputs(supervisor, inputs, healthy=True)

    def _start(self, supervisor: Supervisor, inputs: ServerInputs) -> dict[str, Any]:
        # Clear whatever a killed create or a dead supervisord left behind.
        supervisor.stop()
        supervisor.remove()
        _ensure_port_free(inputs)
        supervisor.write(_command(supervisor, inputs), _files(inputs))
        try:
            supervisor.launch()
            _wait_healthy(supervisor, inputs)
        except BaseException:
            supervisor.stop()
            supervisor.remove()
            raise
        return self._outputs(supervisor, inputs, healthy=True)

    def _outputs(
        self, supervisor: Supervisor, inputs: ServerInputs, *, healthy: bool
    ) -> dict[str, Any]:
        process = supervisor.process()
        return {
            **inputs.model_dump(exclude={"token"}),
            "token_sha256": _digest(inputs.token),
            "url": server_url(inputs.host, inputs.port),
            "pid": process.pid if process is not None else None,
            "healthy": healthy,
        }


def server_url(host: str, port: int) -> str:
    """The URL clients on this machine use; wildcard hosts are reached on loopback."""
    host = _WILDCARDS.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _command(supervisor: Supervisor, inputs: ServerInputs) -> list[str]:
    command = [
        sys.executable, "-m", "mlinfra.serving",
        "--host", inputs.host,
        "--port", str(inputs.port),
        "--workers", str(inputs.workers),
        "--registry", inputs.registry,
        "--env", inputs.env,
    ]  # fmt: skip
    if inputs.max_body_bytes is not None:
        command += ["--max-body-bytes", str(inputs.max_body_bytes)]
    if inputs.token:
        command += ["--token-file", str(supervisor.run_dir / TOKEN_FILE)]
    return command + code_path_arguments(inputs.code_paths)


def _files(inputs: ServerInputs) -> dict[str, str | None]:
    return {TOKEN_FILE: inputs.token or None}


def _read_token(supervisor: Supervisor) -> str | None:
    try:
        return (supervisor.run_dir / TOKEN_FILE).read_text() or None
    except OSError:
        return None


def _digest(token: str | None) -> str:
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


def _running_args(supervisor: Supervisor) -> dict[str, Any]:
    """Host, port, workers and code paths the program really runs with, from its command line."""
    process = supervisor.program()
    try:
        argv = process.cmdline() if process is not None else []
    except psutil.Error:
        return {}
    if not argv:
        return {}
    found: dict[str, Any] = {}
    for flag, key in (("--host", "host"), ("--port", "port"), ("--workers", "workers")):
        if flag in argv[:-1]:
            found[key] = argv[argv.index(flag) + 1]
    found["code_paths"] = [
        value for flag, value in zip(argv, argv[1:], strict=False) if flag == CODE_PATH_OPTION
    ]
    return found


def _ensure_port_free(inputs: ServerInputs) -> None:
    key = f"env.{inputs.env}.serving"
    try:
        free = port_free(inputs.host, inputs.port)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {inputs.host}: {exc.strerror or exc}; set {key}.host in mlinfra.toml"
        ) from exc
    if not free:
        raise DeploymentError(
            f"port {inputs.port} on {inputs.host} is already in use by {port_holder(inputs.port)}; "
            f"stop it or set {key}.port in mlinfra.toml to a free port"
        )


def _probe(host: str, port: int, timeout: float = 2.0) -> bool:
    import httpx

    try:
        response = httpx.get(server_url(host, port) + HEALTH_PATH, timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _wait_healthy(supervisor: Supervisor, inputs: ServerInputs) -> None:
    """Poll the health endpoint; give up early if supervisord says the program cannot start."""
    import httpx

    url = server_url(inputs.host, inputs.port) + HEALTH_PATH
    deadline = time.monotonic() + HEALTH_TIMEOUT
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            # BACKOFF: it exited while starting. supervisord would retry, but a server that
            # cannot start is almost always misconfigured, so say so now rather than in 7 s.
            state = supervisor.program_state()
            if state in _FAILED_STATES or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    why = _FAILED_STATES.get(state, f"no answer within {HEALTH_TIMEOUT:g} s")
    raise DeploymentError(
        f"model server for env {inputs.env} did not become healthy at {url} ({why}); "
        f"last lines of its log:\n{supervisor.log_tail()}"
    )


@dataclass(frozen=True, kw_only=True)
class ModelServerArgs:
    run_dir: pulumi.Input[str]
    registry: pulumi.Input[str]
    env: pulumi.Input[str]
    host: pulumi.Input[str] = "127.0.0.1"
    port: pulumi.Input[int] = 8700
    workers: pulumi.Input[int] = 1
    max_body_bytes: pulumi.Input[int] | None = None
    token: pulumi.Input[str] | None = None
    """Bearer token the server requires; written to a 0600 file, never on a command line."""
    code_paths: pulumi.Input[list[str]] = field(default_factory=list)
    """Directories of the project's own modules, first on the server's import path; absolute."""


class ModelServer(LocalResource[ModelServerArgs], module="mlinfra", name="ModelServer"):
    """`url` is where clients reach the server; `healthy` is what the last read found."""

    provider_type = ModelServerProvider
    computed = ("url", "pid", "healthy")
    url: pulumi.Output[str]
    pid: pulumi.Output[int]
    healthy: pulumi.Output[bool]
