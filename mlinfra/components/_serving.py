"""ServingStack: the endpoint that answers predictions for an env, behind a token if asked."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from ..config import Environment
from ..providers.local import GeneratedToken, GeneratedTokenArgs, ModelServer, ModelServerArgs
from ._target import Target, require_local

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
    target: Target = "local"

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
            target=env.settings.target,
        )


class ServingStack(pulumi.ComponentResource):
    """On `local`, a model-server process under supervisord, health-checked before it counts."""

    url: pulumi.Output[str]
    token: pulumi.Output[str] | None
    """Secret; None unless auth is on."""

    def __init__(
        self, name: str, args: ServingStackArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        require_local(args.target, "ServingStack")
        super().__init__("mlinfra:index:ServingStack", name, None, opts)
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
            ),
            child,
        )
        self.url = server.url
        self.token = pulumi.Output.secret(token.token) if token is not None else None
        outputs: dict[str, pulumi.Output[str]] = {"url": self.url}
        if self.token is not None:
            outputs["token"] = self.token
        self.register_outputs(outputs)
