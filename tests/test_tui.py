"""`mlinfra tui` driven by Textual's Pilot against a real deployed iris project (its stack up,
two trained versions, a live server), and once as a real process in a pseudo-terminal."""

from __future__ import annotations

import dataclasses
import os
import pty
import re
import select
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _live_env import frozen
from conftest import MLINFRA, IrisProject, copy_iris
from textual.pilot import Pilot

import mlinfra
from mlinfra._identity import current_user
from mlinfra.monitoring import AlertCandidate, AlertStore
from mlinfra.monitoring._alerts import Window
from mlinfra.serving import deployment_dir, read_acks
from mlinfra.tui import MlinfraApp, Source
from mlinfra.tui._confirm import ConfirmScreen
from mlinfra.tui._help import HelpScreen
from mlinfra.tui._table import Row, Rows, RowTable
from mlinfra.tui._view import View

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IrisProject]:
    """The iris example up in dev (staging left down), with no gates so that any version may
    serve, two versions trained, v1 deployed. Tests that act arrange what they act on."""
    iris = copy_iris(tmp_path_factory.mktemp("tui") / "iris")
    iris.set_gates()
    for command in (("up", "--yes"), ("train", "--search", "none"), ("train", "--search", "none")):
        done = iris.cli(*command, "--env", "dev")
        assert done.returncode == 0, done.stderr
    deploy(iris, "1")
    yield iris
    iris.destroy_all()


class RecordingApp(MlinfraApp):
    """The app, keeping every notification it showed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.said: list[tuple[str, str]] = []

    def notify(self, message: str, **options: Any) -> None:
        self.said.append((message, options.get("severity", "information")))
        super().notify(message, **options)


def tui(project: IrisProject, **options: Any) -> RecordingApp:
    options.setdefault("env", "dev")
    options.setdefault("refresh_seconds", None)
    return RecordingApp(Source(mlinfra.open_project(project.root)), **options)


def dev(project: IrisProject) -> mlinfra.Env:
    return mlinfra.open_project(project.root).env("dev")


def deploy(project: IrisProject, *args: str) -> None:
    done = project.cli("deploy", *args, "--env", "dev")
    assert done.returncode == 0, done.stderr


def serve_alone(project: IrisProject, version: int) -> None:
    """Make `version` the only one served: no canary, champion `version`."""
    env = dev(project)
    rollout = env.rollout()
    if rollout is not None and rollout.active:
        env.abort(reason="test arrangement")
    table = env.deployment()
    if table is None or table.stable != version:
        deploy(project, str(version))


def start_canary(project: IrisProject) -> tuple[int, int]:
    """A canary of the other version at 10%, left running (an hour per step): (stable, canary)."""
    serve_alone(project, 1)
    deploy(project, "2", "--canary", "10", "--interval", "1h")
    return 1, 2


async def until(pilot: Pilot[Any], condition: Callable[[], Any], what: str, timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await pilot.pause(0.05)


async def loaded(pilot: Pilot[Any], view: str | None = None) -> View[Any]:
    """The current view (`view` if given) once it has shown its first read."""
    app = pilot.app
    if view is not None:
        await until(pilot, lambda: app.current_mode == view, f"the {view} view")
    await until(pilot, lambda: isinstance(app.screen, View) and app.screen.loaded, "a read")
    screen = app.screen
    assert isinstance(screen, View)
    return screen


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until no worker runs (an action and the read after it)."""
    app = pilot.app
    await until(pilot, lambda: not any(worker.is_running for worker in app.workers), "workers done")
    await pilot.pause()


def cells(view: View[Any], table: str | None = None) -> list[tuple[str, ...]]:
    found = view.query_one(f"#{table}" if table else RowTable.__name__, RowTable)
    return [row.cells for row in found.shown]


def column(view: View[Any], name: str, table: str | None = None) -> list[str]:
    found = view.query_one(f"#{table}" if table else RowTable.__name__, RowTable)
    index = found.rows.columns.index(name)
    return [row.cells[index] for row in found.shown]


def explanation(view: View[Any]) -> str:
    return str(view.query_one("#explanation").content)  # type: ignore[attr-defined]


async def confirm(pilot: Pilot[Any], key: str, answer: str = "y") -> ConfirmScreen:
    """Press an action's key, wait for its confirmation, answer it and wait for the outcome."""
    app = pilot.app
    await pilot.press(key)
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
    asked = app.screen
    assert isinstance(asked, ConfirmScreen)
    await pilot.press(answer)
    await settle(pilot)
    assert not isinstance(app.screen, ConfirmScreen)
    return asked


async def cursor_to(pilot: Pilot[Any], view: View[Any], key: str) -> None:
    """Move the cursor of the view's table down to the row `key`."""
    table = view.query_one(RowTable)
    await pilot.press("home")
    for _ in range(table.shown_count):
        if table.cursor_row is not None and table.cursor_row.key == key:
            return
        await pilot.press("down")
    raise AssertionError(f"no row {key} in {[row.key for row in table.shown]}")


async def jump(pilot: Pilot[Any], text: str) -> None:
    await pilot.press("colon")
    await until(pilot, lambda: pilot.app.screen.query("#jump"), "the : prompt")
    await pilot.press(*text, "enter")


# -- reading ----------------------------------------------------------------------------------


async def test_first_screen_lists_every_env_with_stack_and_what_it_serves(
    project: IrisProject,
) -> None:
    app = tui(project)
    async with app.run_test(size=(180, 40)) as pilot:
        assert app.current_mode == "environments"
        view = await loaded(pilot)
        rows = {row[1]: row for row in cells(view)}
        assert set(rows) == {"dev", "staging", "prod"}
        dev_row, staging, prod = rows["dev"], rows["staging"], rows["prod"]
        assert dev_row[0] == "▸" and dev_row[4] == "up" and dev_row[3] == "embedded"
        assert int(dev_row[5]) == len(dev(project).resources()) > 0
        assert dev_row[8] == "succeeded" and dev_row[-1] == "iris v1"
        assert staging[4] == "not up" and staging[-1] == "-"
        if shutil.which("pulumi") is None:  # no pulumi CLI here: nothing can apply prod
            assert prod[2:5] == ("kubernetes", "-", "not applied here")


async def test_an_env_that_is_not_up_explains_itself_in_every_view(project: IrisProject) -> None:
    app = tui(project)
    async with app.run_test(size=(160, 40)) as pilot:
        await loaded(pilot)
        for view in ("resources", "models", "deployments", "alerts", "history"):
            await jump(pilot, f"{view} staging")
            shown = await loaded(pilot, view)
            assert app.env_name == "staging"
            assert "env 'staging' is not up; run `mlinfra up --env staging`" in explanation(shown)
            assert not shown.query_one("#content").display


async def test_models_shows_versions_aliases_and_a_version_with_its_lineage(
    project: IrisProject,
) -> None:
    serve_alone(project, 1)
    app = tui(project)
    async with app.run_test(size=(180, 50)) as pilot:
        await jump(pilot, "models")
        view = await loaded(pilot, "models")
        assert column(view, "version") == ["v2", "v1"]
        assert column(view, "aliases")[1] == "champion"
        await pilot.press("down", "enter")
        detail = await loaded(pilot)
        lines = {(row[0], row[1]): row[2] for row in cells(detail)}
        version = dev(project).version("iris", 1)
        assert lines[("lineage", "data_hash")] == version.lineage["data_hash"]
        assert lines[("version", "aliases")] == "champion"
        assert ("param", "logisticregression__C") in lines
        assert lines[("gate", "-")].startswith("not evaluated in this env yet")  # none declared
        await pilot.press("escape")
        assert app.screen is view


async def test_compare_two_versions_side_by_side(project: IrisProject) -> None:
    app = tui(project)
    async with app.run_test(size=(180, 50)) as pilot:
        await jump(pilot, "models")
        await loaded(pilot, "models")
        await pilot.press("c", "down", "c")
        detail = await loaded(pilot)
        rows = cells(detail)
        assert detail.query_one(RowTable).rows.columns == ("section", "name", "v2", "v1")
        expected = dev(project).compare("iris", 2, 1)
        differing = {row[1] for row in rows if row[0] == "lineage"}
        assert differing == set(expected.lineage) and "run_id" in differing
        if not expected.params:  # two fits of the same search-free model share their params
            assert ("param", "(all the same)", "", "") in rows


async def test_filter_keeps_matching_rows_and_esc_clears_it(project: IrisProject) -> None:
    app = tui(project)
    async with app.run_test(size=(180, 40)) as pilot:
        await jump(pilot, "models")
        view = await loaded(pilot, "models")
        await pilot.press("slash", *"v2")
        assert column(view, "version") == ["v2"]
        assert "filter 'v2': 1 of 2 rows" in str(view.query_one("#title").content)  # type: ignore[attr-defined]
        await pilot.press("enter")  # keeps the filter, back to the table
        assert column(view, "version") == ["v2"] and isinstance(app.focused, RowTable)
        await pilot.press("escape")
        assert column(view, "version") == ["v2", "v1"]


async def test_jump_by_name_prefix_or_env_and_unknown_names_say_so(project: IrisProject) -> None:
    app = tui(project)
    async with app.run_test(size=(160, 40)) as pilot:
        await loaded(pilot)
        await jump(pilot, "hist")
        history = await loaded(pilot, "history")
        assert "up" in column(history, "kind", "updates")
        moves = cells(history, "aliases")
        assert ("iris", "champion") in {(row[1], row[2]) for row in moves}
        await jump(pilot, "nope")
        await until(pilot, lambda: app.said, "a notification")
        message, severity = app.said[-1]
        assert severity == "warning" and "no view or env 'nope'" in message
        assert app.current_mode == "history"
        await pilot.press("escape")  # back where we came from
        assert app.current_mode == "environments"


async def test_the_mouse_picks_an_env_with_a_double_click(project: IrisProject) -> None:
    app = tui(project)
    async with app.run_test(size=(160, 40)) as pilot:
        view = await loaded(pilot)
        staging = column(view, "env").index("staging")
        await pilot.click(RowTable, offset=(4, 1 + staging), times=2)  # line 0: the header
        await loaded(pilot, "resources")
        assert app.env_name == "staging"


async def test_help_lists_the_keys_and_esc_closes_it(project: IrisProject) -> None:
    app = tui(project)
    async with app.run_test(size=(160, 50)) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = " ".join(str(s.content) for s in app.screen.query(".key"))  # type: ignore[attr-defined]
        for key in (":", "/", "R", "P", "A", "F", "K", "Esc", "q"):
            assert f"  {key} " in shown
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_enter_drills_into_a_resource_with_secrets_masked_and_esc_goes_back(
    project: IrisProject,
) -> None:
    app = tui(project)
    async with app.run_test(size=(180, 50)) as pilot:
        await loaded(pilot)
        await pilot.press("enter")  # dev: its resources
        view = await loaded(pilot, "resources")
        names = [name.strip() for name in column(view, "name")]
        server = names.index("serving-server")
        await pilot.press(*["down"] * server, "enter")
        detail = await loaded(pilot)
        lines = {(row[0], row[1]): row[2] for row in cells(detail)}
        assert lines[("output", "url")] == f"http://127.0.0.1:{project.ports['dev']}"
        assert ("input", "__provider") not in lines
        await pilot.press("escape")
        assert app.screen is view
        await pilot.press("escape")
        assert app.current_mode == "environments"


async def test_deployments_show_live_traffic_per_variant(project: IrisProject) -> None:
    serve_alone(project, 1)
    app = tui(project, refresh_seconds=0.5)
    url = f"http://127.0.0.1:{project.ports['dev']}/invocations"
    async with app.run_test(size=(180, 50)) as pilot, httpx.AsyncClient() as client:
        await jump(pilot, "deployments")
        view = await loaded(pilot, "deployments")
        assert "iris: stable v1" in str(view.query_one("#serving").content)  # type: ignore[attr-defined]

        async def served() -> bool:
            for _ in range(5):
                body = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
                assert (await client.post(url, json=body)).status_code == 200
            rows = cells(view, "traffic")
            return bool(rows) and rows[0][0] == "stable" and float(rows[0][3]) > 0

        deadline = time.monotonic() + 30
        while not await served():
            assert time.monotonic() < deadline, "no requests/s ever shown"
            await pilot.pause(0.1)
        stable = cells(view, "traffic")[0]
        assert stable[1] == "v1" and stable[2] == "100%" and stable[4] == "0.0%"
        await until(pilot, lambda: view.query_one("#stable-rps").data, "a chart")  # type: ignore[attr-defined]


async def test_live_views_show_changes_made_elsewhere(project: IrisProject) -> None:
    app = tui(project, refresh_seconds=0.2)
    async with app.run_test(size=(180, 40)) as pilot:
        await jump(pilot, "models")
        view = await loaded(pilot, "models")
        env = dev(project)
        with env.registry() as registry:
            registry.tag(registry.get("iris", 2), {"seen": "by-the-tui"})
        await until(pilot, lambda: "seen=by-the-tui" in column(view, "tags")[0], "the new tag")


async def test_a_hung_server_never_freezes_input(project: IrisProject) -> None:
    serve_alone(project, 1)
    app = tui(project, refresh_seconds=0.2)
    registry = dev(project).outputs().registry_path
    workers = [ack.pid for ack in read_acks(deployment_dir(registry, "dev"))]
    async with app.run_test(size=(160, 40)) as pilot:
        await jump(pilot, "deployments")
        await loaded(pilot, "deployments")
        with frozen(workers):
            await pilot.pause(0.5)  # a read now waits on the frozen server
            started = time.monotonic()
            await jump(pilot, "history")
            await loaded(pilot, "history")
            assert time.monotonic() - started < 3  # not the 5 s the stuck read waits


async def test_a_read_or_action_landing_after_the_app_quit_is_dropped(project: IrisProject) -> None:
    """A read or an action still on its way when the app quits (a server answering late) lands
    on screens already taken down: it is dropped, not a crash at exit."""
    app = tui(project)
    async with app.run_test(size=(160, 40)) as pilot:
        await jump(pilot, "deployments")
        view = await loaded(pilot, "deployments")
        env, data, problem = view._last_read
    with app._context():  # as call_from_thread runs them when a late read or action lands
        view._settle(env, data, problem, unchanged=False)
        app._finished("rolled back", "information")


async def test_an_unreachable_server_is_explained_in_place_of_its_traffic(
    project: IrisProject,
) -> None:
    """The env's stack exports a server URL nothing listens on: the Deployments view says so."""

    class ElsewhereSource(Source):
        """The real project, its server's URL pointing at a closed port (the stack cannot be
        told to lose its server without taking the module's project down)."""

        def _env(self, name: str) -> mlinfra.Env:
            env = super()._env(name)
            outputs = env.outputs()
            closed = dataclasses.replace(
                outputs, exported={**outputs.exported, "serving_url": "http://127.0.0.1:9"}
            )
            env.outputs = lambda: closed  # type: ignore[method-assign]
            return env

    app = RecordingApp(
        ElsewhereSource(mlinfra.open_project(project.root)), env="dev", refresh_seconds=None
    )
    async with app.run_test(size=(160, 40)) as pilot:
        await jump(pilot, "deployments")
        view = await loaded(pilot, "deployments")
        problem = view.query_one("#traffic-problem")
        assert problem.display
        assert "cannot read metrics from the server at http://127.0.0.1:9" in str(
            problem.content  # type: ignore[attr-defined]
        )
        assert not view.query_one("#charts").display
        assert "iris: stable" in str(view.query_one("#serving").content)  # type: ignore[attr-defined]


# -- acting -----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_rollback_moves_the_champion_and_what_is_served(project: IrisProject) -> None:
    serve_alone(project, 1)
    serve_alone(project, 2)  # champion v1 -> v2: the rollback goes back to v1
    app = tui(project)
    async with app.run_test(size=(160, 40)) as pilot:
        await loaded(pilot)
        asked = await confirm(pilot, "R")
        assert asked.plan.changes[-2:] == [
            "serve iris v1 instead of v2, at once",
            "move the champion alias of iris in dev from v2 to v1",
        ]
    env = dev(project)
    assert env.aliases("iris")["champion"] == 1
    table = env.deployment()
    assert table is not None and table.stable == 1 and table.canary is None
    assert any("serves iris v1" in message for message, _ in app.said)
    assert served_version(project) == "1"


def served_version(project: IrisProject) -> str:
    """The version the live server answers with, once it has switched (it polls its table)."""
    url = f"http://127.0.0.1:{project.ports['dev']}/invocations"
    deadline = time.monotonic() + 20
    expected = str(dev(project).deployment().stable)  # type: ignore[union-attr]
    while True:
        answer = httpx.post(url, json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=10)
        version = answer.headers["x-model-version"]
        if version == expected or time.monotonic() > deadline:
            return version
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize(("key", "phase"), [("P", "promoted"), ("A", "aborted")])
async def test_promote_and_abort_end_the_canary(project: IrisProject, key: str, phase: str) -> None:
    stable, canary = start_canary(project)
    app = tui(project)
    async with app.run_test(size=(160, 40)) as pilot:
        await loaded(pilot)
        asked = await confirm(pilot, key)
        assert f"v{canary}" in asked.plan.changes[0]
    env = dev(project)
    rollout = env.rollout()
    assert rollout is not None and rollout.phase == phase
    serving = canary if phase == "promoted" else stable
    table = env.deployment()
    assert table is not None and table.stable == serving and table.canary is None
    assert env.aliases("iris")["champion"] == serving
    assert served_version(project) == str(serving)


@pytest.mark.slow
async def test_refresh_records_the_last_refresh_shown_in_environments(
    project: IrisProject,
) -> None:
    env = dev(project)
    env.forget_last_refresh()
    app = tui(project)
    async with app.run_test(size=(180, 40)) as pilot:
        view = await loaded(pilot)
        assert column(view, "infra drift (last refresh)")[0] == "never refreshed"
        await confirm(pilot, "F")
        found = env.last_refresh()
        read = [resource for resource in env.resources() if resource.custom]
        assert found is not None and found.resources == len(read) > 0
        assert column(view, "infra drift (last refresh)")[0].startswith("none (")


def raise_alert(project: IrisProject, feature: str = "petal_length") -> int:
    """An alert as the env's monitor raises one, in its own alert store."""
    directory = dev(project).outputs().monitoring_dir
    assert directory is not None
    now = time.time()
    with AlertStore(directory / "alerts.db") as store:
        return store.raise_alert(
            AlertCandidate(
                env="dev",
                severity="warning",
                kind="feature_drift",
                feature=feature,
                statistic="ks_p_adjusted",
                value=0.0004,
                threshold=0.05,
                window=Window(label="1h", start=now - 3600, end=now),
                message=f"{feature} drifted: KS p = 0.0004 after Holm, below 0.05",
            ),
            now=now,
            cooldown_seconds=3600,
        ).alert.id


@pytest.mark.slow
async def test_acknowledge_marks_the_alert_under_the_cursor(project: IrisProject) -> None:
    alert = raise_alert(project, "sepal_width")
    app = tui(project)
    async with app.run_test(size=(180, 50)) as pilot:
        await jump(pilot, "alerts")
        view = await loaded(pilot, "alerts")
        await cursor_to(pilot, view, str(alert))
        await confirm(pilot, "K")
        row = column(view, "id").index(str(alert))
        assert column(view, "acknowledged")[row].startswith(f"{current_user()} ")
    acknowledged = [a for a in dev(project).alerts(include_acknowledged=True) if a.id == alert]
    assert acknowledged and acknowledged[0].acknowledged


@pytest.mark.slow
async def test_n_and_esc_cancel_and_change_nothing(project: IrisProject) -> None:
    serve_alone(project, 1)
    env = dev(project)
    env.forget_last_refresh()
    before = env.deployment()
    alert = raise_alert(project, "petal_width")
    app = tui(project)
    async with app.run_test(size=(160, 40)) as pilot:
        await loaded(pilot)
        await confirm(pilot, "R", "n")
        await confirm(pilot, "F", "escape")
        await jump(pilot, "alerts")
        await cursor_to(pilot, await loaded(pilot, "alerts"), str(alert))
        await confirm(pilot, "K", "n")
    assert env.deployment() == before and env.last_refresh() is None
    assert [a.acknowledged for a in env.alerts(include_acknowledged=True) if a.id == alert] == [
        False
    ]
    assert sum("did not happen" in message for message, _ in app.said) == 3


async def test_readonly_refuses_every_action_and_says_so(project: IrisProject) -> None:
    env = dev(project)
    before = env.deployment()
    alert = raise_alert(project, "sepal_length")
    app = tui(project, readonly=True)
    async with app.run_test(size=(160, 40)) as pilot:
        await jump(pilot, "alerts")
        await loaded(pilot, "alerts")
        await pilot.press("R", "P", "A", "F", "K")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert "read-only" in str(app.screen.query_one("#title").content)  # type: ignore[attr-defined]
    refused = [message for message, severity in app.said if severity == "warning"]
    for action in ("rollback", "promote", "abort", "refresh", "acknowledge"):
        assert f"read-only: {action} is disabled" in "\n".join(refused)
    assert env.deployment() == before
    assert [a.acknowledged for a in env.alerts(include_acknowledged=True) if a.id == alert] == [
        False
    ]


@pytest.mark.slow
async def test_an_action_that_fails_is_a_notification_not_a_crash(project: IrisProject) -> None:
    """The canary ends (by the CLI) while the abort waits for its confirmation."""
    start_canary(project)
    app = tui(project)
    async with app.run_test(size=(160, 40)) as pilot:
        await loaded(pilot)
        await pilot.press("A")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        done = project.cli("abort", "--env", "dev")
        assert done.returncode == 0, done.stderr
        await pilot.press("y")
        await settle(pilot)
        assert app.is_running
        message, severity = app.said[-1]
        assert severity == "error" and message.startswith("abort the canary in env dev failed:")
        await pilot.press("P")  # nothing left to promote: said, never confirmed
        await settle(pilot)
        message, severity = app.said[-1]
        assert severity == "warning" and "no canary is running in env dev" in message
        assert not isinstance(app.screen, ConfirmScreen)


# -- the table --------------------------------------------------------------------------------


async def test_filtering_ten_thousand_rows_keeps_the_matching_ones_and_the_cursor() -> None:
    from textual.app import App, ComposeResult

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield RowTable(("model", "version"))

    rows = [Row(f"iris:v{n}", ("iris", f"v{n}")) for n in range(10_000, 0, -1)]
    app = One()
    async with app.run_test(size=(80, 20)) as pilot:
        table = app.query_one(RowTable)
        table.show(Rows.of(table.rows.columns, rows))
        table.focus()
        await pilot.press("down", "down")
        assert table.cursor_row == rows[2]  # v9998
        table.set_filter("v999")
        assert [row.cells[1] for row in table.shown] == [
            "v9999",
            "v9998",
            "v9997",
            "v9996",
            "v9995",
            "v9994",
            "v9993",
            "v9992",
            "v9991",
            "v9990",
            "v999",
        ]
        assert table.cursor_row == rows[2]
        table.set_filter("")
        assert table.shown_count == 10_000 and table.cursor_row == rows[2]
        await pilot.press("end")
        assert table.cursor_row == rows[-1]


# -- a real terminal --------------------------------------------------------------------------

ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


class Terminal:
    """`mlinfra tui` in a pseudo-terminal of a fixed size: keys in, screen text out."""

    def __init__(self, project: IrisProject, *args: str) -> None:
        self.leader, follower = pty.openpty()
        os.set_blocking(self.leader, False)
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "45"}
        env.pop("NO_COLOR", None)
        import fcntl
        import struct
        import termios

        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 45, 160, 0, 0))
        self.process = subprocess.Popen(
            [*MLINFRA, "tui", *args],
            cwd=project.root,
            env=env,
            stdin=follower,
            stdout=follower,
            stderr=follower,
            start_new_session=True,
        )
        os.close(follower)
        self.output = ""

    def read(self) -> str:
        """Everything written so far, escape sequences taken out."""
        while select.select([self.leader], [], [], 0.05)[0]:
            try:
                chunk = os.read(self.leader, 65536)
            except OSError:  # the process is gone
                break
            if not chunk:
                break
            self.output += chunk.decode(errors="replace")
        return ESCAPES.sub("", self.output)

    def wait_for(self, text: str, timeout: float = 30) -> float:
        """Seconds until `text` is on screen."""
        started = time.monotonic()
        while text not in self.read():
            assert time.monotonic() - started < timeout, f"{text!r} never shown:\n{self.read()}"
        return time.monotonic() - started

    def press(self, keys: str) -> None:
        os.write(self.leader, keys.encode())

    def exit_code(self, timeout: float = 20) -> int:
        """Wait for the process to end, reading what it writes meanwhile (a full terminal
        buffer would block it)."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            assert time.monotonic() < deadline, "mlinfra tui did not exit"
            self.read()
        return self.process.returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        os.close(self.leader)


@pytest.mark.slow
def test_mlinfra_tui_in_a_real_terminal(project: IrisProject) -> None:
    serve_alone(project, 1)
    terminal = Terminal(project, "--env", "dev")
    try:
        started = time.monotonic()
        terminal.wait_for("Environments")
        terminal.wait_for("iris v1")  # read, not only drawn
        print(f"first screen read in {time.monotonic() - started:.2f} s")
        seen = len(terminal.read())
        terminal.press(":")
        terminal.wait_for("view or env:")
        terminal.press("models\r")
        terminal.wait_for("env dev  ·  Models")
        terminal.wait_for("champion")  # the versions, read after the view was drawn
        screen = terminal.read()[seen:]
        assert "v2" in screen and "v1" in screen and "iris" in screen
        terminal.press("q")
        assert terminal.exit_code() == 0
    finally:
        terminal.close()


def test_mlinfra_tui_refuses_an_unknown_env(project: IrisProject) -> None:
    done = project.cli("tui", "--env", "nope")
    assert done.returncode == 2
    assert "nope" in done.stderr and "Traceback" not in done.stderr


def test_other_commands_do_not_import_textual(project: IrisProject) -> None:
    probe = "import sys; from mlinfra.cli import app; print('textual' in sys.modules)"
    done = subprocess.run(
        [MLINFRA[0], "-c", probe], capture_output=True, text=True, cwd=Path(project.root)
    )
    assert done.stdout.strip() == "False", done.stderr
