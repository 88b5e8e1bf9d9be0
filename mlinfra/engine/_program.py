"""Running a Pulumi program in-process, with a monitor that hands every registration to the engine.

This is the pulumi SDK's own mock machinery (`pulumi.runtime.mocks`): the program runs exactly
as under `pulumi up`, but `RegisterResource` calls land in `EngineMonitor` instead of the engine's
gRPC server.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import runpy
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockEngine, MockMonitor, Mocks, MockSettings
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.settings import ROOT, configure
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from ..errors import ConfigError, DeploymentError

__all__ = [
    "Registrar",
    "Registration",
    "StepFailed",
    "ensure_importable",
    "program_file",
    "run_program",
    "sdk_event_loop",
]

STACK_TYPE = "pulumi:pulumi:Stack"
_log = logging.getLogger("mlinfra.engine")
_INT_KEY = "__mlinfra_int__"
_answering = contextvars.ContextVar("mlinfra_answering", default=False)
"""Set on a monitor thread while it serializes outputs for the program, which reads them with
the SDK's own decoding: no tagged ints there."""


@dataclass(frozen=True)
class Registration:
    """One `RegisterResource` call: everything the program said about a resource."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    dependencies: list[str]
    protect: bool
    ignore_changes: list[str]
    delete_before_replace: bool | None
    replace_on_changes: list[str]
    retain_on_delete: bool
    additional_secret_outputs: list[str]


class StepFailed(Exception):
    """A registration the engine could not carry out; it already recorded why."""


class Registrar(Protocol):
    def register(self, registration: Registration) -> tuple[str, dict[str, Any]]: ...

    def set_stack_outputs(self, outputs: dict[str, Any]) -> None: ...


class _NoMocks(Mocks):
    """Invokes and calls have no provider behind them in the embedded engine."""

    def new_resource(self, args: Any) -> tuple[str | None, dict[str, Any]]:
        raise DeploymentError(f"{args.typ}: the embedded engine cannot create this resource")

    def call(self, args: Any) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise DeploymentError(
            f'{args.token}: provider functions need the pulumi engine; set engine = "pulumi"'
        )


class EngineMonitor(MockMonitor):
    def __init__(self, registrar: Registrar) -> None:
        super().__init__(_NoMocks())
        self._registrar = registrar
        self._stack_urn = ""

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == STACK_TYPE:
            self._stack_urn = urn
            return resource_pb2.RegisterResourceResponse(urn=urn)
        registration = Registration(
            urn=urn,
            type=request.type,
            name=request.name,
            parent=request.parent,
            custom=bool(request.custom),
            inputs=_restore_ints(rpc.deserialize_properties(request.object, keep_unknowns=True)),
            dependencies=sorted(set(request.dependencies)),
            protect=bool(request.protect),
            ignore_changes=list(request.ignoreChanges),
            delete_before_replace=(
                request.deleteBeforeReplace if request.deleteBeforeReplaceDefined else None
            ),
            replace_on_changes=list(request.replaceOnChanges),
            retain_on_delete=bool(request.retainOnDelete),
            additional_secret_outputs=list(request.additionalSecretOutputs),
        )
        try:
            id_, outputs = self._registrar.register(registration)
        except StepFailed:
            # Reported as the engine does: the SDK marks the outputs unknown and the program
            # goes on, so resources that do not depend on this one are still applied.
            return resource_pb2.RegisterResourceResponse(urn=urn, result=resource_pb2.Result.FAIL)
        token = _answering.set(True)
        try:
            payload = _sync_await(rpc.serialize_properties(outputs, {}))
        finally:
            _answering.reset(token)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=payload)

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802
        if request.urn == self._stack_urn:
            outputs = rpc.deserialize_properties(request.outputs, keep_unknowns=True)
            self._registrar.set_stack_outputs(dict(_restore_ints(outputs)))
        return super().RegisterResourceOutputs(request)

    def ReadResource(self, request: Any) -> Any:  # noqa: N802
        raise DeploymentError(
            f"{request.type} {request.name}: reading existing resources (Resource.get) needs "
            'the pulumi engine; set engine = "pulumi"'
        )


def run_program(
    program: Path,
    registrar: Registrar,
    *,
    project: str,
    stack: str,
    preview: bool,
) -> None:
    """Run the program at `program` (a `__main__.py` or its directory) to completion."""
    main = program if program.is_file() else program_file(program)
    monitor = EngineMonitor(registrar)
    features = set(monitor.GetDeploymentInfo(None).supportedFeatures)
    configure(
        MockSettings(
            monitor=monitor,
            monitor_features=features,
            engine=MockEngine(_log),
            project=project,
            stack=stack,
            dry_run=preview,
            organization="organization",
            callbacks=None,
        )
    )
    ensure_importable([main.parent])
    # A fresh root stack for this run, whatever an earlier program or test left in this context.
    root_token = ROOT.set(None)
    try:
        with sdk_event_loop() as loop, _keeping_ints():
            loop.run_until_complete(run_in_stack(_runner(main)))
    finally:
        ROOT.reset(root_token)


@contextmanager
def sdk_event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh event loop for the pulumi SDK on this thread, closed after the block with the
    loops of its executor threads: the SDK (de)serializes there and needs a loop on each, and
    its own would leak until garbage collection."""
    thread_loops: list[asyncio.AbstractEventLoop] = []

    def give_thread_a_loop() -> None:
        thread_loop = asyncio.new_event_loop()
        asyncio.set_event_loop(thread_loop)
        thread_loops.append(thread_loop)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.set_default_executor(
        ThreadPoolExecutor(thread_name_prefix="mlinfra-register", initializer=give_thread_a_loop)
    )
    try:
        yield loop
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop(None)
        for thread_loop in thread_loops:
            thread_loop.close()


def program_file(stack_dir: Path) -> Path:
    """The stack program, `__main__.py` in the stack directory, as both engines run it."""
    main = stack_dir / "__main__.py"
    if not main.is_file():
        raise ConfigError(
            f"no Pulumi program at {main}; set `stack` under [project] in mlinfra.toml "
            "to the directory holding __main__.py"
        )
    return main


def ensure_importable(folders: list[Path]) -> None:
    """Let the program and the providers it pickled by reference import the project's modules,
    as they can when pulumi runs the program from its own directory."""
    for folder in folders:
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))


@contextmanager
def _keeping_ints() -> Iterator[None]:
    """The SDK sends every number as a protobuf double, so a port 8921 would reach the engine
    as 8921.0 (and an int above 2**53 rounded). While a program runs, the ints it declares are
    sent as tagged strings instead, which `_restore_ints` turns back: the state and the
    providers get what the program said, ints as ints and floats as floats."""
    send = rpc.serialize_property

    async def send_keeping_ints(value: Any, *args: Any, **kwargs: Any) -> Any:
        as_protobuf = kwargs.get("return_protobuf_value", len(args) > 7 and args[7])
        if type(value) is int and not as_protobuf and not _answering.get():
            return {_INT_KEY: str(value)}
        return await send(value, *args, **kwargs)

    rpc.serialize_property = send_keeping_ints  # type: ignore[assignment]
    try:
        yield
    finally:
        rpc.serialize_property = send  # type: ignore[assignment]


def _restore_ints(value: Any) -> Any:
    if isinstance(value, dict):
        tagged = value.get(_INT_KEY)
        if len(value) == 1 and isinstance(tagged, str):
            return int(tagged)
        return {key: _restore_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_restore_ints(item) for item in value]
    return value


def _runner(main: Path) -> Callable[[], None]:
    def run() -> None:
        runpy.run_path(str(main), run_name="__main__")

    return run
