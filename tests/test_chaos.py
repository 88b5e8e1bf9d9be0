"""Chaos, for real: the iris example brought up through the CLI with two server workers, a steady
load from a thread, and in turn every fault the env is documented to survive: its workers
changed, a busy port asked for, the server's master and then one worker killed with SIGKILL, the
rollout driver killed mid-canary, four 10 MB bodies at once, an artifact gone while the server
restarts.

Every request is recorded with the phase it was sent in, and none may fail but as the docs say
(serving.md, "Changes, restarts and crashes"): a killed master's port refuses connections until
its successor listens, never a 503; a killed worker loses what it had in flight, on the
connections it held; a server whose artifact is missing answers 503 saying why until the artifact
is back. Outside those stretches readiness probes are held to the issue's target, a p99 under
100 ms. At the end the env is as it should be: nothing drifted, v2 served, one supervisord with
two workers, and no process left once it is destroyed.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from _live_env import LiveEnv, bring_up
from _serving import ROW
from conftest import IrisProject, wait_for
from test_server_changes import configure
from test_serving_load import big_body

from mlinfra.registry import Registry
from mlinfra.serving import read_acks, read_deployment
from mlinfra.serving._runtime import RETRY_MAX_SECONDS

pytestmark = pytest.mark.slow

WORKERS = 2
PROBE_P99_SECONDS = 0.100  # the target for readiness probes while the env is up
PAUSE_SECONDS = 0.01  # between two rounds of the load: about 60 requests a second each way
# A request that reaches a new master before its workers are up waits for them (documented): a
# patient client, as a load balancer's is, so that a loaded machine's slow boot is not a failure.
REQUEST_TIMEOUT_SECONDS = 60


Documented = Callable[["Outcome"], bool]


def nothing(_outcome: Outcome) -> bool:
    return False


@dataclass
class Phase:
    """A stretch of the test, and which failures the docs allow in it."""

    name: str
    started: float
    documented: Documented = nothing
    down: bool = False  # documented to be down: its probes are not held to the latency target
    until: float = math.inf  # when the env came back (monotonic), once the test has seen it


@dataclass(frozen=True)
class Outcome:
    phase: Phase
    kind: str  # "predict" or "probe"
    sent: float  # time.monotonic() when it was sent
    seconds: float
    status: int | None  # None: no answer
    error: str | None  # the transport error's type when there was no answer
    detail: str
    port: int | None  # the client's port on the connection it was sent on

    @property
    def failed(self) -> bool:
        return self.status != 200

    @property
    def refused(self) -> bool:
        return self.error == "ConnectError"

    @property
    def broken(self) -> bool:
        """Sent on a connection that broke before the answer came (its server process died)."""
        return self.error in {"ReadError", "WriteError", "RemoteProtocolError"}

    @property
    def excused(self) -> bool:
        return self.phase.documented(self)

    @property
    def before_back(self) -> bool:
        return self.sent <= self.phase.until

    @property
    def unavailable(self) -> bool:
        """Answered "not serving": a prediction 503, a readiness probe 400."""
        return self.status == {"predict": 503, "probe": 400}[self.kind]


class ClientPort:
    """The client's port on the connection a request went out on (an httpcore trace hook)."""

    def __init__(self) -> None:
        self.port: int | None = None

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            self.port = info["return_value"].get_extra_info("client_addr")[1]


@dataclass
class SteadyLoad:
    """One thread sending, in turn, a one-row prediction on a kept connection and a readiness
    probe on a new connection (as a kubelet probes, reaching whichever worker accepts)."""

    live: LiveEnv
    phases: list[Phase] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)  # list.append is atomic
    _stop: threading.Event = field(default_factory=threading.Event)
    _sending: Phase | None = None  # the phase of the request in flight
    _thread: threading.Thread | None = None

    def begin(self, name: str, documented: Documented = nothing, *, down: bool = False) -> Phase:
        """Requests sent from now on belong to phase `name`; it returns once none sent before is
        still in flight, so that the fault the caller brings next meets only requests of `name`
        and is judged by what its docs allow."""
        phase = Phase(name, time.monotonic(), documented, down)
        self.phases.append(phase)
        if self._thread is not None and self._thread.is_alive():
            wait_for(
                lambda: self._sending is phase,
                f"the load sending in phase {name!r}",
                timeout=REQUEST_TIMEOUT_SECONDS + 10,
            )
        return phase

    @contextmanager
    def running(self) -> Iterator[SteadyLoad]:
        self.begin("bring up")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()

    def _run(self) -> None:
        fresh = httpx.Limits(max_keepalive_connections=0)
        kept_port, probe_port = ClientPort(), ClientPort()
        with (
            httpx.Client(timeout=REQUEST_TIMEOUT_SECONDS, trust_env=False) as kept,
            httpx.Client(timeout=REQUEST_TIMEOUT_SECONDS, trust_env=False, limits=fresh) as probes,
        ):
            while not self._stop.is_set():
                self._send(
                    "predict",
                    lambda: kept.post(
                        f"{self.live.url}/invocations",
                        json={"instances": [ROW]},
                        extensions={"trace": kept_port},
                    ),
                    kept_port,
                )
                probe_port.port = None
                self._send(
                    "probe",
                    lambda: probes.get(
                        f"{self.live.url}/v2/health/ready", extensions={"trace": probe_port}
                    ),
                    probe_port,
                )
                self._stop.wait(PAUSE_SECONDS)

    def _send(self, kind: str, request: Callable[[], httpx.Response], port: ClientPort) -> None:
        phase, sent, started = self.phases[-1], time.monotonic(), time.perf_counter()
        self._sending = phase
        status, error = None, None
        try:
            response = request()
        except httpx.HTTPError as exc:
            error, detail = type(exc).__name__, str(exc)
        else:
            status, detail = response.status_code, response.text[:200]
        seconds = time.perf_counter() - started
        self.outcomes.append(Outcome(phase, kind, sent, seconds, status, error, detail, port.port))

    def unexcused(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failed and not o.excused]

    def report(self) -> str:
        """Per phase: requests sent, failed, probe latency; then every failure with its time."""
        lines = [
            f"{'phase':<44} {'sent':>6} {'failed':>6}  probe ms: {'p50':>6} {'p99':>6} {'max':>6}"
            "  prediction ms: max"
        ]
        for phase in self.phases:
            mine = [o for o in self.outcomes if o.phase is phase]
            probes = sorted(o.seconds * 1000 for o in mine if o.kind == "probe")
            slowest = max((o.seconds * 1000 for o in mine if o.kind == "predict"), default=0.0)
            failed = sum(1 for o in mine if o.failed)
            name = phase.name + (" (down)" if phase.down else "")
            figures = (
                f"{statistics.median(probes):6.1f} {percentile(probes, 99):6.1f} {probes[-1]:6.1f}"
                if probes
                else f"{'-':>6} {'-':>6} {'-':>6}"
            )
            lines.append(
                f"{name:<44} {len(mine):>6} {failed:>6}            {figures}  {slowest:17.1f}"
            )
        for o in self.outcomes:
            if o.failed:
                verdict = "documented" if o.excused else "UNEXPECTED"
                what = f"{o.status} {o.detail}" if o.status else f"{o.error}: {o.detail}"
                at = f"+{o.sent - o.phase.started:.3f}s"
                lines.append(f"  {verdict} {o.phase.name} {at} {o.kind} (port {o.port}): {what}")
        return "\n".join(lines)


def percentile(ordered: list[float], pct: float) -> float:
    """The nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@dataclass
class Chaos:
    """The env under load, and what the phases need to find its parts."""

    project: IrisProject
    live: LiveEnv
    load: SteadyLoad
    aside: Path  # where an artifact is moved while it is missing

    @property
    def port(self) -> int:
        return self.project.ports["dev"]

    def master(self) -> psutil.Process:
        [master] = self.running("mlinfra.serving")
        return master

    def supervisords(self) -> list[psutil.Process]:
        """The model server's supervisord (the drift monitor has one of its own)."""
        return [
            p
            for p in self.running("supervisor.supervisord")
            if "/monitoring/" not in " ".join(command(p))
        ]

    def running(self, module: str) -> list[psutil.Process]:
        """The project's live processes running `python -m module`."""
        return [p for p in self.project.processes() if module in command(p)]

    def serving(self, workers: int = WORKERS) -> bool:
        """One master whose `workers` workers all serve the table's generation, and a readiness
        probe that says so."""
        table = read_deployment(self.live.directory)
        wanted = table.generation if table is not None else None
        try:
            pids = {p.pid for p in workers_of(self.master())}
            ready = httpx.get(f"{self.live.url}/v2/health/ready", timeout=5, trust_env=False)
        except (ValueError, psutil.Error, httpx.HTTPError):
            return False
        acks = {a.pid for a in read_acks(self.live.directory) if a.serving == wanted}
        return (
            len(pids) == workers
            and pids <= acks
            and ready.status_code == 200
            and ready.json()["generation"] == wanted
        )

    def listening_again(self, killed: psutil.Process) -> float:
        """When (monotonic) a master other than `killed` listens on the port."""
        [supervisord] = self.supervisords()

        def listening() -> bool:
            for master in supervisord.children():
                if master.pid == killed.pid or not alive(master):
                    continue
                with contextlib.suppress(psutil.Error):
                    sockets = master.net_connections("tcp")
                    return any(s.status == psutil.CONN_LISTEN for s in sockets)
            return False

        wait_for(listening, "a new master listening")
        return time.monotonic()

    def up(self) -> subprocess.CompletedProcess[str]:
        return self.live.cli("up", "--yes")

    def server_logs(self) -> str:
        run_dir = self.project.root / ".mlinfra" / "envs" / "dev" / "serving"
        return "\n".join(
            f"--- {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            for log in sorted(run_dir.glob("**/server.log"))
        )

    def rollout(self) -> dict[str, Any]:
        return self.live.ok("rollout", "status")  # type: ignore[no-any-return]

    def artifact(self, version: int) -> Path:
        with Registry.open(self.live.registry) as opened:
            digest = opened.get("iris", version).artifact_sha256
        return self.live.registry / "artifacts" / digest[:2] / digest[2:]


def change_workers(chaos: Chaos) -> None:
    """1. `up` with `serving.workers` 2 -> 1 -> 2: a new server takes the socket over, and
    each `up` returns once it serves."""
    for count in (1, 2):
        before = chaos.master()
        chaos.load.begin(f"1 serving.workers -> {count}")
        configure(chaos.project, workers=count)
        done = chaos.up()
        assert done.returncode == 0, done.stdout + done.stderr
        master = chaos.master()
        assert master.pid != before.pid and len(workers_of(master)) == count
        assert chaos.serving(workers=count)


def busy_port(chaos: Chaos) -> None:
    """2. `serving.port` set to a port someone else listens on: `up` fails in one line, exit 5,
    and the server it would have replaced keeps serving."""
    before = chaos.master()
    chaos.load.begin("2 serving.port -> a busy port")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        configure(chaos.project, port=taken)
        done = chaos.up()
        configure(chaos.project, port=chaos.port)
    assert done.returncode == 5, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert str(taken) in line and f"keeps serving on port {chaos.port}" in line, line
    assert chaos.master().pid == before.pid and chaos.serving()


def kill_master(chaos: Chaos) -> None:
    """3. The master killed with SIGKILL: its workers die with it, supervisord starts a new one,
    and connections are refused until it listens (documented), never answered 503."""
    master = chaos.master()
    workers = workers_of(master)
    phase = chaos.load.begin("3 master killed", lambda o: o.refused and o.before_back, down=True)
    master.kill()
    phase.until = chaos.listening_again(master)
    wait_for(lambda: not any(alive(p) for p in [master, *workers]), "the workers died with it")
    wait_for(chaos.serving, "a new master serving again")


def kill_worker(chaos: Chaos) -> None:
    """4. One worker killed with SIGKILL: what it had in flight fails (documented), the other
    answers everything, uvicorn starts a new one."""
    master = chaos.master()
    victim, survivor = workers_of(master)
    lost: set[int] = set()  # client ports of the connections the victim holds
    chaos.load.begin("4 one worker killed", lambda o: o.broken and o.port in lost)
    victim.suspend()  # accepts nothing more: the connections it holds are those it loses
    lost.update(c.raddr.port for c in victim.net_connections("tcp") if c.raddr)
    victim.kill()
    wait_for(
        lambda: victim.pid not in {p.pid for p in workers_of(master)} and chaos.serving(),
        "a new worker serving",
    )
    assert chaos.master().pid == master.pid and alive(survivor)


def kill_driver(chaos: Chaos) -> None:
    """5. The detached rollout driver killed with SIGKILL mid-canary: its watchdog starts it
    again and the canary is promoted."""
    chaos.load.begin("5 driver killed mid-canary")
    done = chaos.live.cli(
        "deploy", "2", "--steps", "50,100", "--interval", "1s", "--min-samples", "20"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    before = wait_for(
        lambda: (s := chaos.rollout())["driver"] and s["driver"]["state"] == "running" and s,
        "a running driver",
    )
    killed = before["driver"]["pid"]
    os.kill(killed, signal.SIGKILL)
    assert before["rollout"]["phase"] == "progressing" and before["deployment"]["canary"] == 2
    assert len(before["rollout"]["results"]) < 2, "killed before its last step ended"
    log = chaos.live.directory / "controller.log"
    wait_for(lambda: chaos.rollout()["rollout"]["phase"] != "progressing", "end of the canary")
    after = chaos.rollout()
    assert after["rollout"]["phase"] == "promoted", after["rollout"]["reason"]
    assert after["rollout"]["driver_restarts"] == 1, log.read_text()
    assert "was killed by SIGKILL; starting it again" in log.read_text()
    assert (after["deployment"]["stable"], after["deployment"]["canary"]) == (2, None)
    wait_for(chaos.serving, "every worker serving v2")


def big_bodies(chaos: Chaos) -> None:
    """6. Four bodies of about 10 MB at once, while probes and small predictions go on."""
    body, rows = big_body()  # built before the phase: it holds this process's GIL a while
    headers = {"content-type": "application/json"}

    def post(_: int) -> httpx.Response:
        return httpx.post(
            f"{chaos.live.url}/invocations",
            content=body,
            headers=headers,
            timeout=300,
            trust_env=False,
        )

    chaos.load.begin("6 four 10 MB bodies at once")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(post, range(4)))
    for answer in answers:
        assert answer.status_code == 200, answer.text[:300]
        assert len(answer.json()["predictions"]) == len(rows)


def missing_artifact(chaos: Chaos) -> None:
    """7. The served version's artifact gone: a workers change is refused (the old server keeps
    serving from memory); the master killed, the new workers cannot load it and say so; the
    artifact back, they serve it by themselves, retrying with back-off."""
    table = read_deployment(chaos.live.directory)
    assert table is not None and table.stable == 2
    generation, artifact = table.generation, chaos.artifact(2)
    shutil.move(artifact, chaos.aside)
    chaos.load.begin("7 artifact gone: serving.workers -> 1")
    configure(chaos.project, workers=1)
    done = chaos.up()
    configure(chaos.project, workers=WORKERS)
    assert done.returncode == 5, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert f"generation {generation} refused" in line, line
    assert f"keeps serving on port {chaos.port}" in line, line

    refusal = f"generation {generation} refused"  # what the docs say a 503 says meanwhile

    def unavailable_saying_why(outcome: Outcome) -> bool:
        return outcome.unavailable and refusal in outcome.detail

    master = chaos.master()
    killed = chaos.load.begin(
        "7 artifact gone: master killed",
        lambda o: (o.refused and o.before_back) or unavailable_saying_why(o),
        down=True,
    )
    master.kill()
    killed.until = chaos.listening_again(master)
    wait_for(
        lambda: (r := probe(chaos)) is not None and r.status_code == 400 and refusal in r.text,
        "readiness saying the new workers refuse the deployment",
    )
    back = chaos.load.begin(
        "7 artifact back", lambda o: unavailable_saying_why(o) and o.before_back, down=True
    )
    shutil.move(chaos.aside, artifact)
    wait_for(chaos.serving, "serving again by itself", timeout=RETRY_MAX_SECONDS + 30)
    back.until = time.monotonic()


def probe(chaos: Chaos) -> httpx.Response | None:
    try:
        return httpx.get(f"{chaos.live.url}/v2/health/ready", timeout=5, trust_env=False)
    except httpx.HTTPError:
        return None


def workers_of(master: psutil.Process) -> list[psutil.Process]:
    """The master's live uvicorn workers (started by multiprocessing's spawn)."""
    try:
        children = master.children()
    except psutil.Error:
        return []
    return [p for p in children if alive(p) and "spawn_main" in " ".join(command(p))]


def command(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


PHASES = (
    change_workers,
    busy_port,
    kill_master,
    kill_worker,
    kill_driver,
    big_bodies,
    missing_artifact,
)


def test_env_under_load_survives_every_documented_fault(
    iris_project: IrisProject, tmp_path: Path
) -> None:
    configure(iris_project, workers=WORKERS)
    live = bring_up(iris_project)
    deployed = live.cli("deploy", "1")
    assert deployed.returncode == 0, deployed.stderr
    load = SteadyLoad(live)
    chaos = Chaos(iris_project, live, load, aside=tmp_path / "artifact")
    wait_for(chaos.serving, "v1 served by both workers")
    with load.running():
        wait_for(lambda: len(load.outcomes) > 10, "the load going")
        try:
            for fault in PHASES:
                fault(chaos)
        except BaseException:
            print(load.report(), chaos.server_logs(), sep="\n")
            raise
        load.begin("end")
        time.sleep(1)  # a last second of steady traffic, after the last fault
    print(load.report())  # shown when the test fails

    assert live.cli("refresh").returncode == 0, "nothing drifted"
    rollout = chaos.rollout()
    assert (rollout["deployment"]["stable"], rollout["deployment"]["canary"]) == (2, None)
    assert rollout["rollout"]["phase"] == "promoted" and rollout["driver"] is None
    assert len(chaos.supervisords()) == 1
    assert len(workers_of(chaos.master())) == WORKERS
    logs = chaos.server_logs()
    destroyed = live.cli("destroy", "--yes", "--delete-data")
    assert destroyed.returncode == 0, destroyed.stderr
    assert iris_project.processes() == []

    assert load.unexcused() == [], load.report() + "\n" + logs
    for phase in load.phases:
        probes = sorted(o.seconds for o in load.outcomes if o.phase is phase and o.kind == "probe")
        assert probes, f"no probe sent in phase {phase.name!r}"
        if not phase.down:
            assert percentile(probes, 99) < PROBE_P99_SECONDS, load.report()
