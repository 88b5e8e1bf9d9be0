"""ServingStack: the endpoint that answers predictions for an env, behind a token if asked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi

from ..config import Environment
from ..providers.local import GeneratedToken, GeneratedTokenArgs, ModelServer, ModelServerArgs
from ._monitoring import DriftMonitor, DriftMonitorArgs, MonitoringArgs
from ._target import Target, kubernetes_target, require_target

if TYPE_CHECKING:
    from ..kubernetes import KubernetesTarget

__all__ = ["ServingStack", "ServingStackArgs"]


@dataclass(frozen=True, kw_only=True)
class ServingStackArgs:
    registry_path: pulumi.Input[str]
    """The registry to serve from; pass ModelRegistry.path so serving depends on the registry."""
    env: str
    """Whose deployment table the server follows."""
    run_dir: pulumi.Input[str]
    """Where the supervisor keeps its config, pidfile and logs; absolute."""
    host: pulumi.Input[str]
    port: pulumi.Input[int]
    workers: pulumi.Input[int] = 1
    max_body_bytes: pulumi.Input[int] | None = None
    auth: bool = False
    """Require a generated bearer token (exported as the secret output `token`)."""
    code_paths: pulumi.Input[list[str]] = field(default_factory=list)
    """Directories of the project's own modules (classes a model holds), put first on the
    server's import path; absolute. `from_environment` gives the project root."""
    batch_window_ms: pulumi.Input[float] | None = None
    """Longest wait to predict concurrent requests in one call; 0 turns micro-batching off."""
    max_batch: pulumi.Input[int] | None = None
    monitoring: MonitoringArgs | None = None
    """Log predictions and watch them for drift (a DriftMonitor beside the server); None: off."""
    target: Target = "local"
    kubernetes: KubernetesTarget | None = None
    """The env's namespace and settings, on the kubernetes target."""

    @classmethod
    def from_environment(
        cls, env: Environment, *, registry_path: pulumi.Input[str]
    ) -> ServingStackArgs:
        serving = env.settings.serving
        return cls(
            registry_path=registry_path,
            env=env.name,
            run_dir=str(env.env_dir / "serving"),
            host=serving.host,
            port=serving.port,
            workers=serving.workers,
            max_body_bytes=serving.max_body_bytes,
            auth=serving.auth,
            code_paths=[str(env.project.root.resolve())],
            batch_window_ms=serving.batch_window_ms,
            max_batch=serving.max_batch,
            monitoring=MonitoringArgs.from_environment(env),
            target=env.settings.target,
            kubernetes=kubernetes_target(env),
        )


class ServingStack(pulumi.ComponentResource):
    """On `local`, a model-server process under supervisord, health-checked before it counts;
    on `kubernetes`, its image, Deployments, autoscaler and Ingresses (mlinfra.kubernetes)."""

    url: pulumi.Output[str]
    token: pulumi.Output[str] | None
    """Secret; None unless auth is on."""
    monitoring_dir: pulumi.Output[str] | None
    """The prediction log, alerts and drift reports; None when monitoring is off."""

    def __init__(
        self, name: str, args: ServingStackArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        require_target(args.target, args.kubernetes, "ServingStack")
        super().__init__("mlinfra:index:ServingStack", name, None, opts)
        if args.kubernetes is not None:
            self._on_kubernetes(name, args, args.kubernetes)
            return
        child = pulumi.ResourceOptions(parent=self)
        token = GeneratedToken(f"{name}-token", GeneratedTokenArgs(), child) if args.auth else None
        server = ModelServer(
            f"{name}-server",
            ModelServerArgs(
                run_dir=args.run_dir,
                registry=args.registry_path,
                env=args.env,
                host=args.host,
                port=args.port,
                workers=args.workers,
                max_body_bytes=args.max_body_bytes,
                token=token.token if token is not None else None,
                code_paths=args.code_paths,
                batch_window_ms=args.batch_window_ms,
                max_batch=args.max_batch,
                **_log_args(args.monitoring),
            ),
            child,
        )
        self.url = server.url
        self.token = pulumi.Output.secret(token.token) if token is not None else None
        outputs: dict[str, pulumi.Output[str]] = {"url": self.url}
        if self.token is not None:
            outputs["token"] = self.token
        self.monitoring_dir = None
        if args.monitoring is not None:
            monitor = DriftMonitor(
                f"{name}-monitor",
                DriftMonitorArgs(
                    monitoring=args.monitoring,
                    registry_path=args.registry_path,
                    env=args.env,
                    url=server.url,
                    token=self.token,
                    code_paths=args.code_paths,
                    target=args.target,
                ),
                child,
            )
            self.monitoring_dir = monitor.directory
            outputs["monitoring_dir"] = monitor.directory
        self.register_outputs(outputs)

    def _on_kubernetes(self, name: str, args: ServingStackArgs, target: KubernetesTarget) -> None:
        from ..kubernetes import KubeDriftMonitor, KubeServing, ServerOptions
        from ..kubernetes._monitor import MONITORING_DIR

        log_options = None
        if args.monitoring is not None:
            flags = {
                f"--{key.replace('_', '-')}": v for key, v in _log_args(args.monitoring).items()
            }
            log_options = flags | {"--log-dir": f"{MONITORING_DIR}/log"}
        child = pulumi.ResourceOptions(parent=self)
        serving = KubeServing(
            name,
            target,
            ServerOptions(
                env=args.env,
                registry_path=args.registry_path,
                port=args.port,
                workers=args.workers,
                max_body_bytes=args.max_body_bytes,
                batch_window_ms=args.batch_window_ms,
                max_batch=args.max_batch,
                log_options=log_options,
            ),
            child,
        )
        self.url = serving.url
        self.token = None
        self.monitoring_dir = None
        outputs: dict[str, pulumi.Output[str]] = {"url": self.url}
        if args.monitoring is not None:
            monitor = KubeDriftMonitor(
                f"{name}-monitor",
                target,
                monitoring=args.monitoring,
                image=serving.image,
                registry_path=args.registry_path,
                url=serving.url,
                opts=child,
            )
            self.monitoring_dir = monitor.directory
            outputs["monitoring_dir"] = monitor.directory
        self.register_outputs(outputs)


def _log_args(monitoring: MonitoringArgs | None) -> dict[str, Any]:
    """The server's prediction-log options: none when monitoring is off."""
    if monitoring is None:
        return {}
    return {
        "log_dir": monitoring.log_dir,
        "log_sample_rate": monitoring.sample_rate,
        "log_segment_seconds": monitoring.segment_seconds,
        "log_max_bytes": monitoring.log_max_bytes,
        "log_retention_seconds": monitoring.log_retention_seconds,
    }
