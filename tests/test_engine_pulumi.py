"""The pulumi engine, as far as it can be exercised on a machine without the `pulumi` CLI.

No pulumi CLI exists here and none can be installed, so nothing below runs the real Pulumi
engine. What is real: engine selection against the real PATH, the Automation API's own parsing
classes (EngineEvent.from_json, UpdateSummary, Deployment) fed with events, state and history in
the CLI's JSON format, and, in the `..._fake_pulumi_cli` tests, the whole Automation API path
(LocalWorkspace, Stack, its subprocess runner and event-log reader) talking to a stand-in
`pulumi` executable that answers with those same JSON documents.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pulumi.automation as auto
import pytest

from mlinfra.config import Environment, load_project
from mlinfra.engine import Op, StepEvent, open_engine
from mlinfra.engine._pulumi import PulumiEngine
from mlinfra.engine._pulumi_translate import (
    DriftCollector,
    StepCollector,
    raised_error,
    resources_from_deployment,
    update_record,
    useful_line,
)
from mlinfra.errors import (
    DeploymentError,
    EngineUnavailableError,
    StateError,
    StateLockedError,
)

SIG_KEY = "4dabf18193072939515e22adb298388d"
SIG = "1b47061264138c4ac30d75fd1eb44270"
DYNAMIC = "pulumi-python:dynamic:Resource"
GROUP = "journal:index:Group"
STACK_URN = "urn:pulumi:dev::journal::pulumi:pulumi:Stack::journal-dev"
PROVIDER_URN = "urn:pulumi:dev::journal::pulumi:providers:pulumi-python::default"
GROUP_URN = f"urn:pulumi:dev::journal::{GROUP}::group"


def urn(name: str) -> str:
    return f"urn:pulumi:dev::journal::{GROUP}${DYNAMIC}::{name}"


def state(name: str, inputs: dict[str, Any], outputs: dict[str, Any] | None = None) -> dict:
    """A StepEventStateMetadata as the CLI writes it (camelCase JSON)."""
    return {
        "type": DYNAMIC,
        "urn": urn(name),
        "id": f"id-{name}",
        "parent": GROUP_URN,
        "provider": f"{PROVIDER_URN}::04da6b54-80e4-46f7-96ec-b56ff0331ba9",
        "custom": True,
        "inputs": {"__provider": "gASVdQAAAAAAAACMCGRpbGwuX2RpbGyU", **inputs},
        "outputs": {"__provider": "gASVdQAAAAAAAACMCGRpbGwuX2RpbGyU", **(outputs or inputs)},
    }


def meta(op: str, name: str, old: dict | None = None, new: dict | None = None, **extra) -> dict:
    body = {"op": op, "urn": urn(name), "type": DYNAMIC, "provider": PROVIDER_URN, **extra}
    if old is not None:
        body["old"] = old
    if new is not None:
        body["new"] = new
    return body


def pre(metadata: dict, planning: bool = True) -> dict:
    return {
        "sequence": 0,
        "timestamp": 1714557600,
        "resourcePreEvent": {"metadata": metadata, "planning": planning},
    }


def outs(metadata: dict, planning: bool = True) -> dict:
    return {
        "sequence": 0,
        "timestamp": 1714557600,
        "resOutputsEvent": {"metadata": metadata, "planning": planning},
    }


def bookkeeping(op: str) -> list[dict]:
    """The stack and its default provider, which every run reports."""
    stack = {"op": op, "urn": STACK_URN, "type": "pulumi:pulumi:Stack", "provider": ""}
    provider = {
        "op": op,
        "urn": PROVIDER_URN,
        "type": "pulumi:providers:pulumi-python",
        "provider": "",
    }
    return [pre(stack), pre(provider), outs(provider)]


def component(op: str) -> list[dict]:
    group = {
        "type": GROUP,
        "urn": GROUP_URN,
        "id": "",
        "parent": STACK_URN,
        "provider": "",
        "custom": False,
    }
    metadata = {
        "op": op,
        "urn": GROUP_URN,
        "type": GROUP,
        "provider": "",
        "old": group,
        "new": group,
    }
    return [pre(metadata), outs(metadata)]


# An update of a deployed stack: f0 updated, f1 replaced (create-before-delete), f2 created with a
# secret input, f3 deleted; the stack's outputs reported last.
F0_OLD, F0_NEW = state("f0", {"content": "hello"}), state("f0", {"content": "changed"})
F1_OLD, F1_NEW = state("f1", {"path": "f1.txt"}), state("f1", {"path": "moved.txt"})
F2_NEW = state("f2", {"path": "f2.txt", "token": "[secret]"})
F3_OLD = state("f3", {"path": "f3.txt"})
F0_UPDATE = meta(
    "update",
    "f0",
    F0_OLD,
    F0_NEW,
    diffs=["content"],
    detailedDiff={"content": {"diffKind": "update", "inputDiff": True}},
)
F1_CREATE = meta("create-replacement", "f1", F1_OLD, F1_NEW, keys=["path"], diffs=["path"])
F1_REPLACE = meta("replace", "f1", F1_OLD, F1_NEW, keys=["path"], diffs=["path"])
F1_DELETE = meta("delete-replaced", "f1", F1_OLD, F1_NEW)
F2_CREATE = meta("create", "f2", None, F2_NEW)
F3_DELETE = meta("delete", "f3", F3_OLD, None)
STACK_OUTPUTS = {
    "op": "same",
    "urn": STACK_URN,
    "type": "pulumi:pulumi:Stack",
    "provider": "",
    "new": {
        "type": "pulumi:pulumi:Stack",
        "urn": STACK_URN,
        "id": "",
        "parent": "",
        "provider": "",
        "custom": False,
        "outputs": {"sizes": [5, 9], "token": "[secret]"},
    },
}
UPDATE_EVENTS = [
    {"sequence": 0, "timestamp": 1714557600, "preludeEvent": {"config": {}}},
    *bookkeeping("same"),
    *component("same"),
    pre(F0_UPDATE),
    outs(F0_UPDATE),
    pre(F1_CREATE),
    outs(F1_CREATE),
    pre(F1_REPLACE),
    outs(F1_REPLACE),
    pre(F2_CREATE),
    outs(F2_CREATE),
    pre(F3_DELETE),
    outs(F3_DELETE),
    pre(F1_DELETE),
    outs(F1_DELETE),
    outs(STACK_OUTPUTS),
    {
        "sequence": 0,
        "timestamp": 1714557601,
        "summaryEvent": {
            "maybeCorrupt": False,
            "durationSeconds": 1,
            "resourceChanges": {"same": 3, "update": 1, "replace": 1, "create": 1, "delete": 1},
            "PolicyPacks": {},
        },
    },
]


def provider_traceback() -> str:
    """What pulumi's Python dynamic-provider server sends when create raises (format_exc)."""
    try:
        raise DeploymentError("port 8700 is already in use")
    except DeploymentError:
        return traceback.format_exc()


F4_CREATE = meta("create", "f4", None, state("f4", {"path": "f4.txt"}))
FAILED_EVENTS = [
    *bookkeeping("same"),
    pre(F4_CREATE, planning=False),
    {
        "sequence": 0,
        "timestamp": 1714557600,
        "diagnosticEvent": {
            "urn": urn("f4"),
            "prefix": "<{%fg 1%}>error: <{%reset%}>",
            "message": f"<{{%reset%}}>{provider_traceback()}<{{%reset%}}>\n",
            "color": "raw",
            "severity": "error",
        },
    },
    {
        "sequence": 0,
        "timestamp": 1714557600,
        "resOpFailedEvent": {"metadata": F4_CREATE, "status": 1, "steps": 0},
    },
    {
        "sequence": 0,
        "timestamp": 1714557601,
        "diagnosticEvent": {
            "urn": STACK_URN,
            "message": "update failed\n",
            "color": "raw",
            "severity": "error",
        },
    },
    {
        "sequence": 0,
        "timestamp": 1714557601,
        "summaryEvent": {
            "maybeCorrupt": False,
            "durationSeconds": 1,
            "resourceChanges": {"same": 1},
            "PolicyPacks": {},
        },
    },
]


def refreshed(op: str, name: str, size: int, size_now: int | None) -> dict:
    """The outputs event of one refreshed file, `size_now` None when it is gone."""
    old = state(name, {"path": f"{name}.txt"}, {"size": size})
    new = None if size_now is None else state(name, {"path": f"{name}.txt"}, {"size": size_now})
    return outs(meta(op, name, old, new))


# `pulumi refresh --preview-only`: f0 unchanged (op stays "refresh"), f1's file grew (rewritten
# to "update"), f2's file is gone ("delete").
REFRESH_EVENTS = [
    *bookkeeping("same"),
    *component("same"),
    refreshed("refresh", "f0", 5, 5),
    refreshed("update", "f1", 5, 9),
    refreshed("delete", "f2", 5, None),
    {
        "sequence": 0,
        "timestamp": 1714557601,
        "summaryEvent": {
            "maybeCorrupt": False,
            "durationSeconds": 0,
            "resourceChanges": {"same": 4, "update": 1, "delete": 1},
            "PolicyPacks": {},
        },
    },
]

# `pulumi stack export --show-secrets` of a stack with a secret output and a replaced instance
# still to delete.
EXPORT = {
    "version": 3,
    "deployment": {
        "manifest": {"time": "2024-05-01T10:00:05Z", "magic": "abc", "version": "v3.200.0"},
        "secrets_providers": {"type": "passphrase", "state": {"salt": "v1:abc"}},
        "resources": [
            {
                "urn": STACK_URN,
                "custom": False,
                "type": "pulumi:pulumi:Stack",
                "outputs": {"sizes": [5]},
            },
            {
                "urn": PROVIDER_URN,
                "custom": True,
                "id": "7d3f",
                "type": "pulumi:providers:pulumi-python",
            },
            {"urn": GROUP_URN, "custom": False, "type": GROUP, "parent": STACK_URN},
            {
                "urn": urn("f0"),
                "custom": True,
                "id": "id-f0",
                "type": DYNAMIC,
                "parent": GROUP_URN,
                "inputs": {"path": "f0.txt"},
                "outputs": {"path": "f0.txt", "token": {SIG_KEY: SIG, "plaintext": '"s3cret"'}},
                "dependencies": [GROUP_URN],
                "protect": True,
                "ignoreChanges": ["content"],
                "additionalSecretOutputs": ["token"],
                "provider": f"{PROVIDER_URN}::7d3f",
            },
            {
                "urn": urn("f1"),
                "custom": True,
                "id": "id-f1-old",
                "type": DYNAMIC,
                "parent": GROUP_URN,
                "delete": True,
                "retainOnDelete": True,
            },
        ],
    },
}

HISTORY = [
    {
        "version": 3,
        "kind": "destroy",
        "startTime": "2024-05-02T09:00:00.000Z",
        "endTime": "2024-05-02T09:00:02.500Z",
        "message": "",
        "result": "failed",
        "environment": {"exec.kind": "cli"},
        "config": {},
        "resourceChanges": {"delete": 1},
    },
    {
        "version": 2,
        "kind": "update",
        "startTime": "2024-05-01T10:00:00.000Z",
        "endTime": "2024-05-01T10:00:05.000Z",
        "message": "mlinfra up --env dev by alice@laptop",
        "result": "succeeded",
        "config": {},
        "environment": {"exec.kind": "auto.inline", "git.head": "9f1c2e", "git.dirty": "true"},
        "resourceChanges": {"create": 3, "same": 1, "create-replacement": 1},
    },
]

LOCK = {
    "pid": 4242,
    "username": "alice",
    "hostname": "laptop",
    "timestamp": "2024-05-01T10:00:00.123456789+02:00",
}


def make_env(root: Path, *, engine: str = "pulumi", backend_url: str | None = None) -> Environment:
    """A real project on disk whose stack program exports one value."""
    (root / "stack").mkdir(parents=True)
    (root / "stack" / "__main__.py").write_text("import pulumi\n\npulumi.export('answer', 42)\n")
    extra = f'pulumi.backend_url = "{backend_url}"\n' if backend_url else ""
    (root / "mlinfra.toml").write_text(
        f'[project]\nname = "journal"\nstack = "stack"\n\n[env.dev]\nengine = "{engine}"\n{extra}'
    )
    return load_project(root).environment("dev")


def events(raw: list[dict]) -> list[auto.EngineEvent]:
    return [auto.EngineEvent.from_json(event) for event in raw]


# Selection with no CLI on PATH


@pytest.fixture
def without_pulumi_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_engine_pulumi_without_pulumi_cli_fails_with_one_line(tmp_path, without_pulumi_cli):
    env = make_env(tmp_path / "project")
    with pytest.raises(EngineUnavailableError) as caught:
        open_engine(env)
    message = str(caught.value)
    assert "\n" not in message
    assert "pulumi" in message and 'engine = "embedded"' in message
    assert caught.value.exit_code == 2


def test_engine_auto_without_pulumi_cli_chooses_embedded(tmp_path, without_pulumi_cli):
    engine = open_engine(make_env(tmp_path / "project", engine="auto"))
    try:
        assert engine.name == "embedded"
    finally:
        engine.close()


def test_pulumi_engine_without_pulumi_cli_says_so_on_first_use(tmp_path, without_pulumi_cli):
    """The Automation API really tries to run `pulumi version`; that failure is translated."""
    engine = PulumiEngine(make_env(tmp_path / "project"))
    with pytest.raises(EngineUnavailableError) as caught:
        engine.outputs()
    assert "\n" not in str(caught.value) and "install it" in str(caught.value)


def test_backend_urls_and_force_unlock_off_file_backends_without_pulumi_cli(
    tmp_path, without_pulumi_cli
):
    relative = PulumiEngine(make_env(tmp_path / "a", backend_url="file://shared/state"))
    assert relative.backend_url == f"file://{tmp_path / 'a' / 'shared' / 'state'}"
    default = PulumiEngine(make_env(tmp_path / "b"))
    assert default.backend_url == f"file://{tmp_path / 'b' / '.mlinfra' / 'pulumi'}"
    remote = PulumiEngine(make_env(tmp_path / "c", backend_url="s3://bucket/state"))
    assert remote.lock_holder() is None
    with pytest.raises(StateError, match="pulumi cancel --stack dev"):
        remote.up(force_unlock=True)


# Translation of the CLI's JSON through pulumi.automation's own classes


def test_update_events_become_one_step_per_resource_with_diffs():
    seen: list[StepEvent] = []
    collector = StepCollector(seen.append)
    for event in events(UPDATE_EVENTS):
        collector(event)
    steps = {step.name: step for step in collector.steps}
    assert {name: step.op for name, step in steps.items()} == {
        "group": Op.SAME,
        "f0": Op.UPDATE,
        "f1": Op.REPLACE,
        "f2": Op.CREATE,
        "f3": Op.DELETE,
        "f1 (replaced)": Op.DELETE,
    }
    f0 = steps["f0"].diffs
    assert [(d.path, d.kind, d.old, d.new, d.replaces) for d in f0] == [
        ("content", "update", "hello", "changed", False)
    ]
    f1 = steps["f1"].diffs
    assert [(d.path, d.old, d.new, d.replaces) for d in f1] == [
        ("path", "f1.txt", "moved.txt", True)
    ]
    f2 = {d.path: (d.kind, d.new) for d in steps["f2"].diffs}
    assert f2 == {"path": ("add", "f2.txt"), "token": ("add", "[secret]")}
    assert steps["f3"].diffs == []
    live = [(e.step.name, e.phase) for e in seen if e.step.op is not Op.SAME]
    assert live == [
        ("f0", "start"),
        ("f0", "done"),
        ("f1", "start"),
        ("f1", "done"),
        ("f2", "start"),
        ("f2", "done"),
        ("f3", "start"),
        ("f3", "done"),
        ("f1 (replaced)", "start"),
        ("f1 (replaced)", "done"),
    ]
    assert collector.outputs == {"sizes": [5, 9], "token": "[secret]"}
    assert collector.failures == []


def test_failed_step_carries_what_the_provider_raised():
    seen: list[StepEvent] = []
    collector = StepCollector(seen.append)
    for event in events(FAILED_EVENTS):
        collector(event)
    [failed] = collector.failures
    assert (failed.name, failed.op, failed.error) == (
        "f4",
        Op.CREATE,
        "port 8700 is already in use",
    )
    assert [(e.step.name, e.phase) for e in seen] == [("f4", "start"), ("f4", "failed")]
    assert collector.general_errors == ["update failed"]


def test_refresh_events_become_drift_reports():
    drift = DriftCollector()
    for event in events(REFRESH_EVENTS):
        drift(event)
    reports = {r.name: r for r in drift.reports}
    assert {name: r.status for name, r in reports.items()} == {
        "f0": "ok",
        "f1": "changed",
        "f2": "gone",
    }
    assert [(d.path, d.old, d.new) for d in reports["f1"].diffs] == [("size", 5, 9)]


def test_exported_deployment_becomes_resource_states():
    resources = resources_from_deployment(auto.Deployment(**EXPORT))
    assert [r.name for r in resources] == ["group", "f0", "f1"]
    group, f0, f1 = resources
    assert (group.custom, group.parent) == (False, STACK_URN)
    assert f0.outputs["token"] == {SIG_KEY: SIG, "value": "s3cret"}
    assert (f0.id, f0.protect, f0.ignore_changes, f0.secret_outputs) == (
        "id-f0",
        True,
        ["content"],
        ["token"],
    )
    assert f0.dependencies == [GROUP_URN]
    assert (f1.pending_delete, f1.retain_on_delete) == (True, True)


def test_history_entries_become_update_records():
    summaries = [_summary(entry) for entry in HISTORY]
    destroy, up = [update_record(s, "dev") for s in summaries]
    assert (up.id, up.kind, up.result, up.user, up.host) == (
        2,
        "up",
        "succeeded",
        "alice",
        "laptop",
    )
    assert (up.commit, up.dirty) == ("9f1c2e", True)
    assert up.started == datetime.fromisoformat("2024-05-01T10:00:00+00:00").timestamp()
    assert up.finished - up.started == 5.0
    assert up.summary == {"create": 3, "same": 1}
    assert (destroy.kind, destroy.result, destroy.user, destroy.summary) == (
        "destroy",
        "failed",
        "",
        {"delete": 1},
    )


def _summary(entry: dict) -> auto.UpdateSummary:
    """As Stack.history() builds it from `pulumi stack history --json`."""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return auto.UpdateSummary(
        kind=entry["kind"],
        start_time=datetime.strptime(entry["startTime"], fmt),
        message=entry["message"],
        environment=entry["environment"],
        config=entry["config"],
        result=entry["result"],
        end_time=datetime.strptime(entry["endTime"], fmt),
        version=entry["version"],
        resource_changes=entry["resourceChanges"],
    )


def test_raised_error_keeps_what_was_raised_from_a_real_traceback():
    try:
        int("x")
    except ValueError:
        assert raised_error(traceback.format_exc()) == (
            "ValueError: invalid literal for int() with base 10: 'x'"
        )
    assert raised_error(provider_traceback()) == "port 8700 is already in use"
    assert raised_error("\x1b[31merror: plugin not found\x1b[0m") == "plugin not found"


def test_useful_line_skips_generic_failure_lines():
    stderr = "error: could not find a backend at file:///nowhere\nerror: update failed"
    assert useful_line(stderr) == "error: could not find a backend at file:///nowhere"
    assert useful_line("error: update failed", "Diagnostics:\n  error: boom") == "error: boom"
    assert useful_line("", "last words") == "last words"


# The Automation API against a stand-in CLI


FAKE_CLI = """#!{python}
import json, os, sys
from pathlib import Path

here = Path(__file__).parent
args = sys.argv[1:]
env = {{k: v for k, v in os.environ.items() if k.startswith(("PULUMI_", "PYTHONPATH"))}}
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps({{"args": args, "cwd": os.getcwd(), "env": env}}) + "\\n")
words = [a for a in args if not a.startswith("-")]
key = " ".join(words[:2]) if words[0] == "stack" else words[0]
for flag in ("--show-secrets", "--preview-only"):
    if flag in args and key in ("stack output", "refresh"):
        key += " " + flag
answer = json.loads((here / "responses.json").read_text()).get(key, {{}})
locks = sorted(Path(answer.get("locks", "/nonexistent")).glob("*.json"))
cancel = {{"sequence": 99, "timestamp": 0, "cancelEvent": {{}}}}
event_log = args[args.index("--event-log") + 1] if "--event-log" in args else os.devnull
if locks:
    with open(event_log, "a") as log:  # ends the SDK's event-log reader at once
        log.write(json.dumps(cancel) + "\\n")
    lock = json.loads(locks[0].read_text())
    sys.stderr.write(
        "error: the stack is currently locked by 1 lock(s). Either wait for the other "
        "process(es) to end or delete the lock file with `pulumi cancel`.\\n"
        f"  {{locks[0]}}: created by {{lock['username']}}@{{lock['hostname']}} "
        f"(pid {{lock['pid']}}) at {{lock['timestamp']}}\\n"
    )
    sys.exit(255)
if "--event-log" in args:
    with open(event_log, "a") as log:
        for event in [*answer.get("events", []), cancel]:
            log.write(json.dumps(event) + "\\n")
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(answer.get("code", 0))
"""


@dataclass
class FakeCli:
    """A `pulumi` on PATH that answers each command from responses.json and logs its calls."""

    bin: Path

    def answer(self, command: str, **response: Any) -> None:
        path = self.bin / "responses.json"
        responses = json.loads(path.read_text())
        responses[command] = response
        path.write_text(json.dumps(responses))

    def calls(self, command: str | None = None) -> list[dict]:
        lines = (self.bin / "calls.jsonl").read_text().splitlines()
        calls = [json.loads(line) for line in lines]
        return [c for c in calls if command is None or command in " ".join(c["args"])]


@pytest.fixture
def fake_pulumi_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCli:
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    script.write_text(FAKE_CLI.format(python=sys.executable))
    script.chmod(0o755)
    # 3.200 writes engine events to a file (newer CLIs stream them over gRPC).
    (bin_dir / "responses.json").write_text(json.dumps({"version": {"stdout": "v3.200.0\n"}}))
    (bin_dir / "calls.jsonl").touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("MLINFRA_PASSPHRASE", raising=False)
    return FakeCli(bin_dir)


def test_engine_pulumi_and_auto_choose_pulumi_engine_with_fake_pulumi_cli(
    tmp_path, fake_pulumi_cli
):
    for engine in ("pulumi", "auto"):
        chosen = open_engine(make_env(tmp_path / engine, engine=engine))
        assert isinstance(chosen, PulumiEngine)
        chosen.close()
    assert fake_pulumi_cli.calls() == []  # choosing an engine runs no CLI command


def test_reads_of_undeployed_stack_set_up_workspace_with_fake_pulumi_cli(tmp_path, fake_pulumi_cli):
    fake_pulumi_cli.answer("stack select", code=255, stderr="error: no stack named 'dev' found\n")
    env = make_env(tmp_path / "project")
    engine = PulumiEngine(env)
    assert (engine.outputs(), engine.resources(), engine.history()) == ({}, [], [])

    home = env.state_dir / "pulumi"
    settings = (home / "workspace" / "Pulumi.yaml").read_text()
    assert f"url: file://{home}" in settings and "name: journal" in settings
    passphrase = home / "passphrase"
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600
    select = fake_pulumi_cli.calls("select")[0]  # each read looks again: it may exist now
    assert select["cwd"] == str(home / "workspace")
    assert select["env"]["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(passphrase)
    assert select["env"]["PULUMI_RUNTIME_VIRTUALENV"] == sys.prefix
    assert str(env.project.stack_dir) in select["env"]["PYTHONPATH"].split(":")
    secret = passphrase.read_text()
    assert all(secret not in json.dumps(call) for call in fake_pulumi_cli.calls())
    assert sorted(p.name for p in env.project.stack_dir.iterdir()) == ["__main__.py"]


def test_outputs_resources_history_with_fake_pulumi_cli(tmp_path, fake_pulumi_cli):
    fake_pulumi_cli.answer(
        "stack output", stdout=json.dumps({"url": "http://x", "token": "[secret]"})
    )
    fake_pulumi_cli.answer(
        "stack output --show-secrets", stdout=json.dumps({"url": "http://x", "token": "s3cret"})
    )
    fake_pulumi_cli.answer("stack export", stdout=json.dumps(EXPORT))
    fake_pulumi_cli.answer("stack history", stdout=json.dumps(HISTORY))
    engine = PulumiEngine(make_env(tmp_path / "project"))
    assert engine.outputs() == {"url": "http://x", "token": {SIG_KEY: SIG, "value": "s3cret"}}
    assert [r.name for r in engine.resources()] == ["group", "f0", "f1"]
    assert [(h.id, h.kind) for h in engine.history(limit=2)] == [(3, "destroy"), (2, "up")]
    [history] = fake_pulumi_cli.calls("history")
    assert history["args"][history["args"].index("--page-size") + 1] == "2"


def test_preview_reports_steps_live_with_fake_pulumi_cli(tmp_path, fake_pulumi_cli):
    fake_pulumi_cli.answer("preview", events=UPDATE_EVENTS)
    seen: list[StepEvent] = []
    result = PulumiEngine(make_env(tmp_path / "project")).preview(on_event=seen.append)
    assert (result.kind, result.engine, result.stack) == ("preview", "pulumi", "dev")
    assert result.counts == {"same": 1, "update": 1, "replace": 1, "create": 1, "delete": 2}
    assert ("f1 (replaced)", "done") in [(e.step.name, e.phase) for e in seen]
    [preview] = fake_pulumi_cli.calls("preview")
    assert "--diff" in preview["args"] and "--stack" in preview["args"]


def test_failed_up_names_resource_and_cause_with_fake_pulumi_cli(tmp_path, fake_pulumi_cli):
    fake_pulumi_cli.answer("up", events=FAILED_EVENTS, code=255, stderr="error: update failed\n")
    engine = PulumiEngine(make_env(tmp_path / "project"))
    with pytest.raises(DeploymentError) as caught:
        engine.up()
    assert str(caught.value) == (f"f4 ({DYNAMIC}): create failed: port 8700 is already in use")
    [up] = fake_pulumi_cli.calls(" up ")
    message = up["args"][up["args"].index("--message") + 1]
    assert message.startswith("mlinfra up --env dev by ")


def test_refresh_previews_drift_without_applying_with_fake_pulumi_cli(tmp_path, fake_pulumi_cli):
    fake_pulumi_cli.answer("refresh --preview-only", events=REFRESH_EVENTS)
    reports = PulumiEngine(make_env(tmp_path / "project")).refresh()
    assert [(r.name, r.status) for r in reports] == [
        ("f0", "ok"),
        ("f1", "changed"),
        ("f2", "gone"),
    ]
    [refresh] = fake_pulumi_cli.calls("refresh")
    assert "--preview-only" in refresh["args"] and "--yes" not in refresh["args"]


def test_lock_names_holder_and_force_unlock_clears_it_with_fake_pulumi_cli(
    tmp_path, fake_pulumi_cli
):
    env = make_env(tmp_path / "project")
    locks = env.state_dir / "pulumi" / ".pulumi" / "locks" / "organization" / "journal" / "dev"
    locks.mkdir(parents=True)
    (locks / "2f9c.json").write_text(json.dumps(LOCK))
    fake_pulumi_cli.answer("up", locks=str(locks), events=UPDATE_EVENTS)
    fake_pulumi_cli.answer("stack output", stdout="{}")
    fake_pulumi_cli.answer("stack output --show-secrets", stdout="{}")
    fake_pulumi_cli.answer("stack history", stdout=json.dumps(HISTORY[1:]))
    engine = PulumiEngine(env)

    holder = engine.lock_holder()
    assert (holder.pid, holder.user, holder.host) == (4242, "alice", "laptop")
    with pytest.raises(StateLockedError) as caught:
        engine.up()
    assert "alice@laptop (pid 4242" in str(caught.value) and "--force-unlock" in str(caught.value)

    result = engine.up(force_unlock=True)
    assert list(locks.iterdir()) == [] and engine.lock_holder() is None
    assert result.counts["create"] == 1  # its outputs are the stand-in's answer: not asserted
