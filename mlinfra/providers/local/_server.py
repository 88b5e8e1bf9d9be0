"""The serving endpoint: `python -m mlinfra.serving` on a port, supervised by supervisord, and
ready (serving what the env's deployment table says) before create or update returns.

Every change starts a new instance of the server beside the one serving (_instances.py). An
update hands the listening socket over to it, so the port never closes and no request fails; a
new port is a replacement, the old server deleted once the new one is ready. Only a replacement
that keeps the port (a new host or run dir) must delete the old server first, and says so.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, ReadResult, UpdateResult
from pydantic import Field

from ..._code_paths import CODE_PATH_OPTION, code_path_arguments
from ...errors import ConfigError, DeploymentError, MlinfraError
from ._base import AbsolutePath, LocalProvider, LocalResource, ProviderInputs, gone, is_unknown
from ._health import UP_STATES, Expected, StartFailed, problem, wait_ready
from ._instances import Instances, handover_path
from ._ports import listen_error, port_free, port_holder, wait_port_free
from ._supervisor import Supervisor

__all__ = ["ModelServer", "ModelServerArgs", "ModelServerProvider", "server_url"]

TOKEN_FILE = "token"
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
    batch_window_ms: float | None = Field(None, ge=0)
    max_batch: int | None = Field(None, ge=1)
    log_dir: AbsolutePath | None = None
    log_sample_rate: float | None = Field(None, ge=0, le=1)
    log_segment_seconds: float | None = Field(None, gt=0)
    log_max_bytes: int | None = Field(None, ge=1)
    log_retention_seconds: float | None = Field(None, gt=0)


# Optional inputs handed to the server as `--flag value` when set (their names, dashed).
_OPTIONAL_FLAGS = (
    "max_body_bytes",
    "batch_window_ms",
    "max_batch",
    "log_dir",
    "log_sample_rate",
    "log_segment_seconds",
    "log_max_bytes",
    "log_retention_seconds",
)


class ModelServerProvider(LocalProvider[ServerInputs]):
    """A new run dir, host or port is a new endpoint: a replacement, which starts the new server
    first unless it needs the port the old one holds. Workers, registry, env, body limit, token
    and code paths are updates: a new instance takes the listening socket over from the old.

    The id is the run dir; the instance serving now is the `instance_dir` output.
    """

    inputs_model = ServerInputs
    replace_on = frozenset({"run_dir", "host", "port"})

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        """Also refuse a host this machine cannot listen on, before anything is changed."""
        result = super().check(olds, news)
        host = news.get("host", "127.0.0.1")
        if result.failures or is_unknown(host) or (reason := listen_error(host)) is None:
            return result
        key = _config_key(news)
        message = f"cannot listen on {host} ({reason}); set {key}.host in mlinfra.toml"
        if olds.get("port"):
            message += f"; the server on port {int(olds['port'])} keeps serving"
        return CheckResult(news, [CheckFailure("host", message)])

    def deletes_first(self, olds: dict[str, Any], news: dict[str, Any]) -> bool:
        """A new server binds a socket of its own: beside the old one only on another port."""
        before, after = self.comparable(olds)["port"], self.comparable(news)["port"]
        return not is_unknown(after) and before is not None and int(before) == int(after)

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = self.parse(props)
        instances = Instances(Path(inputs.run_dir))
        instance = self._adopt(instances, inputs)
        if instance is None:
            # The server this one replaces serves on its own port until the engine deletes it.
            old = instances.current()
            old_port = _serving_port(old) if old is not None else None
            keep = old if old_port is not None and old_port != inputs.port else None
            instances.retire_others(keep)
            instance = self._start(instances, inputs, replacing=old_port if keep else None)
        return CreateResult(id_=inputs.run_dir, outs=self._outputs(instance, inputs))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = self.parse(news)
        instances = Instances(Path(inputs.run_dir))
        old = _recorded(id_, olds)
        running = old.program_state() in UP_STATES
        if running and handover_path(old).is_socket() and "--handover" in _argv(old):
            instance = self._start(instances, inputs, take_over=old, replacing=inputs.port)
        elif running and problem(old, _expected(inputs)) is None:
            instance = self._restart_in_place(instances, inputs, old)
        else:  # it serves nothing (stopped, given up on, workers orphaned): start afresh
            instances.retire_others(None)
            instance = self._start(instances, inputs)
        instances.retire_others(instance)
        return UpdateResult(outs=self._outputs(instance, inputs))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        instance = _recorded(id_, props)
        if instance.process() is None:
            return gone()
        inputs = self.parse({**props, **_running_args(instance)})
        outs = self._outputs(instance, inputs, trouble=problem(instance, _expected(inputs)))
        outs["token_sha256"] = _digest(_read_token(instance))
        return ReadResult(id_=id_, outs=outs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        from ...rollout import stop_driver
        from ...serving import deployment_dir

        inputs = self.parse(props)
        # The env's rollout driver reads this server's metrics at this URL: it stops (pausing
        # the rollout for `mlinfra rollout resume`) rather than outlive the server.
        stop_driver(deployment_dir(inputs.registry, inputs.env))
        instances = Instances(Path(inputs.run_dir))
        instance = _recorded(id_, props)
        if instances.current() not in (None, instance):
            instances.retire(instance)  # replaced: its successor keeps serving
            return
        instances.clear()
        if not wait_port_free(inputs.host, inputs.port, 5):
            holder = port_holder(inputs.port)
            raise DeploymentError(
                f"port {inputs.port} is still held by {holder} after the model server stopped"
            )

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

    def _adopt(self, instances: Instances, inputs: ServerInputs) -> Supervisor | None:
        """A ready server a killed create started with these very inputs is kept, not doubled."""
        for instance in reversed(instances.all()):
            if instance.process() is None:
                continue
            try:
                conf = instance.conf.read_text()
            except OSError:
                continue
            if conf != instance.render(_command(instance, inputs)):
                continue
            if _read_token(instance) != inputs.token:
                continue
            if problem(instance, _expected(inputs)) is None:
                instances.make_current(instance)
                instances.retire_others(instance)
                return instance
        return None

    def _start(
        self,
        instances: Instances,
        inputs: ServerInputs,
        *,
        take_over: Supervisor | None = None,
        replacing: int | None = None,
    ) -> Supervisor:
        """A new instance, ready; on the listening socket of `take_over` if given. `replacing`
        is the port of the server that keeps serving if this one fails, for the message."""
        if take_over is None:
            try:
                _ensure_port_free(inputs)
            except MlinfraError as exc:
                if replacing is None:
                    raise
                raise _not_started(inputs, str(exc), replacing) from exc
        instance = instances.new()
        try:
            instance.write(_command(instance, inputs, take_over), _files(inputs))
            instance.launch()
            wait_ready(instance, _expected(inputs))
        except (StartFailed, DeploymentError) as exc:
            instances.retire(instance)
            raise _not_started(inputs, str(exc), replacing) from exc
        except BaseException:
            instances.retire(instance)
            raise
        instances.make_current(instance)
        return instance

    def _restart_in_place(
        self, instances: Instances, inputs: ServerInputs, old: Supervisor
    ) -> Supervisor:
        """A server started by an mlinfra that could not hand its socket over: stopped, then
        replaced; started again as it was if its replacement fails."""
        old.stop()
        try:
            return self._start(instances, inputs)
        except MlinfraError as exc:
            old.launch()
            raise DeploymentError(f"{exc}; the old server was started again") from exc

    def _outputs(
        self, instance: Supervisor, inputs: ServerInputs, *, trouble: str | None = None
    ) -> dict[str, Any]:
        """`trouble`: why the server does not serve what it should (what read found)."""
        process = instance.process()
        outs = {
            **inputs.model_dump(exclude={"token"}),
            "token_sha256": _digest(inputs.token),
            "url": server_url(inputs.host, inputs.port),
            "pid": process.pid if process is not None else None,
            "healthy": trouble is None,
        }
        if instance.run_dir != Path(inputs.run_dir):  # absent for a server of the old layout
            outs["instance_dir"] = str(instance.run_dir)
        if trouble is not None:
            outs["problem"] = trouble
        return outs


def server_url(host: str, port: int) -> str:
    """The URL clients on this machine use; wildcard hosts are reached on loopback."""
    host = _WILDCARDS.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _command(
    instance: Supervisor, inputs: ServerInputs, take_over: Supervisor | None = None
) -> list[str]:
    command = [
        sys.executable, "-m", "mlinfra.serving",
        "--host", inputs.host,
        "--port", str(inputs.port),
        "--workers", str(inputs.workers),
        "--registry", inputs.registry,
        "--env", inputs.env,
    ]  # fmt: skip
    for name in _OPTIONAL_FLAGS:
        value = getattr(inputs, name)
        if value is not None:
            command += ["--" + name.replace("_", "-"), str(value)]
    if inputs.token:
        command += ["--token-file", str(instance.run_dir / TOKEN_FILE)]
    command += ["--handover", str(handover_path(instance))]
    if take_over is not None:
        command += ["--take-over", str(handover_path(take_over))]
    return command + code_path_arguments(inputs.code_paths)


def _files(inputs: ServerInputs) -> dict[str, str | None]:
    return {TOKEN_FILE: inputs.token or None}


def _read_token(instance: Supervisor) -> str | None:
    try:
        return (instance.run_dir / TOKEN_FILE).read_text() or None
    except OSError:
        return None


def _digest(token: str | None) -> str:
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


def _recorded(id_: str, props: dict[str, Any]) -> Supervisor:
    """The instance the state records: the id itself for a server of the old layout."""
    return Supervisor(Path(props.get("instance_dir") or id_))


def _expected(inputs: ServerInputs) -> Expected:
    from ...serving import deployment_dir

    return Expected(
        url=server_url(inputs.host, inputs.port),
        workers=inputs.workers,
        deployment=deployment_dir(inputs.registry, inputs.env),
    )


def _argv(instance: Supervisor) -> list[str]:
    process = instance.program()
    try:
        return process.cmdline() if process is not None else []
    except psutil.Error:
        return []


def _serving_port(instance: Supervisor) -> int | None:
    """The port a running instance serves on, or None."""
    if instance.program_state() not in UP_STATES:
        return None
    port = _running_args(instance).get("port")
    return int(port) if port is not None else None


def _running_args(instance: Supervisor) -> dict[str, Any]:
    """Host, port, workers and code paths the program really runs with, from its command line."""
    argv = _argv(instance)
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


def _config_key(props: dict[str, Any]) -> str:
    return f"env.{props.get('env')}.serving"


def _not_started(inputs: ServerInputs, reason: str, replacing: int | None) -> DeploymentError:
    if replacing is None:
        return DeploymentError(
            f"the model server for env {inputs.env} did not start on port {inputs.port}: {reason}"
        )
    return DeploymentError(
        f"the new server on port {inputs.port} did not start: {reason}; "
        f"the old one keeps serving on port {replacing}"
    )


def _ensure_port_free(inputs: ServerInputs) -> None:
    key = _config_key(inputs.model_dump())
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
    batch_window_ms: pulumi.Input[float] | None = None
    """Longest wait to predict concurrent requests in one call; 0 turns micro-batching off."""
    max_batch: pulumi.Input[int] | None = None
    log_dir: pulumi.Input[str] | None = None
    """Where the prediction log goes; None: nothing is logged."""
    log_sample_rate: pulumi.Input[float] | None = None
    log_segment_seconds: pulumi.Input[float] | None = None
    log_max_bytes: pulumi.Input[int] | None = None
    log_retention_seconds: pulumi.Input[float] | None = None


class ModelServer(LocalResource[ModelServerArgs], module="mlinfra", name="ModelServer"):
    """`url` is where clients reach the server; `healthy` is what the last read found."""

    provider_type = ModelServerProvider
    computed = ("url", "pid", "healthy")
    url: pulumi.Output[str]
    pid: pulumi.Output[int]
    healthy: pulumi.Output[bool]
