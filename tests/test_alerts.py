"""Alerts: the SQLite store, grouping with a cool-down, and webhook delivery to a real receiver
(an HTTP server on 127.0.0.1 told to answer, fail, hang, refuse or reject). Time is passed in
as `now`, so cool-downs and back-offs are checked without waiting for them."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _webhooks import SECRET, Receiver, running_receiver
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from mlinfra.errors import MlinfraError, StateError
from mlinfra.monitoring._alerts import (
    AlertCandidate,
    AlertNotFoundError,
    AlertStore,
    Severity,
    Window,
)
from mlinfra.monitoring._webhook import (
    FIRST_RETRY_SECONDS,
    MAX_RETRY_SECONDS,
    deliver_due,
    mask_webhook_url,
    retry_delay,
    slack_payload,
)

T0 = 1_700_000_000.0
HOUR = 3600.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as found:
        yield found


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    with AlertStore(tmp_path / "monitoring" / "alerts.db") as opened:
        yield opened


def minutes(count: int) -> float:
    return 60.0 * count


def drift(
    feature: str | None = "petal_length",
    *,
    severity: Severity = "warning",
    value: float = 0.0004,
    env: str = "dev",
) -> AlertCandidate:
    return AlertCandidate(
        env=env,
        severity=severity,
        kind="feature_drift",
        feature=feature,
        statistic="ks_p_adjusted",
        value=value,
        threshold=0.05,
        window=Window(label="1h", start=T0 - HOUR, end=T0),
        message=f"{feature} drifted: KS p = {value:.2g} after Holm, below 0.05",
    )


# -- delivery to a real receiver ---------------------------------------------------------------


def test_new_alert_is_delivered_once_to_a_real_receiver(
    store: AlertStore, receiver: Receiver
) -> None:
    raised = store.raise_alert(drift(), now=T0, cooldown_seconds=HOUR)
    assert raised.new and raised.alert.delivery.status == "pending"

    result = deliver_due(store, receiver.url, now=T0)
    assert (result.delivered, result.failed, result.pending) == (1, 0, 0)
    assert deliver_due(store, receiver.url, now=T0 + 10 * HOUR).delivered == 0

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request["path"] == f"/services/T0/B0/{SECRET}"
    assert request["headers"]["Idempotency-Key"] == f"mlinfra-dev-alert-{raised.alert.id}"
    body = request["body"]
    assert "petal_length drifted" in body["text"]
    assert [block["type"] for block in body["blocks"]] == [
        "header",
        "section",
        "section",
        "context",
    ]
    assert body["alert"]["feature"] == "petal_length"
    assert body["alert"]["statistic"] == "ks_p_adjusted"
    assert body["alert"]["threshold"] == 0.05 and body["alert"]["acknowledged"] is False
    stored = store.get(raised.alert.id)
    assert stored is not None
    assert stored.delivery.status == "delivered" and stored.delivery.delivered_at == T0
    assert stored.delivery.attempts == 1


def test_repeats_within_the_cooldown_are_grouped_and_not_delivered_again(
    store: AlertStore, receiver: Receiver
) -> None:
    first = store.raise_alert(drift(value=0.01), now=T0, cooldown_seconds=HOUR)
    deliver_due(store, receiver.url, now=T0)
    for minutes, value in ((1, 0.004), (2, 0.002), (59, 0.001)):
        repeat = store.raise_alert(drift(value=value), now=T0 + 60 * minutes, cooldown_seconds=HOUR)
        assert not repeat.new and repeat.alert.id == first.alert.id
        deliver_due(store, receiver.url, now=T0 + 60 * minutes)

    (alert,) = store.list("dev")
    assert (alert.count, alert.value, alert.first_at, alert.last_at) == (4, 0.001, T0, T0 + 3540)
    assert "p = 0.001" in alert.message
    assert len(receiver.requests) == 1


def test_a_repeat_after_the_cooldown_raises_a_new_alert_that_is_delivered(
    store: AlertStore, receiver: Receiver
) -> None:
    first = store.raise_alert(drift(), now=T0, cooldown_seconds=HOUR)
    store.raise_alert(drift(), now=T0 + 1800, cooldown_seconds=HOUR)
    later = store.raise_alert(drift(), now=T0 + HOUR, cooldown_seconds=HOUR)
    assert later.new and later.alert.id == first.alert.id + 1
    assert deliver_due(store, receiver.url, now=T0 + HOUR).delivered == 2
    assert [body["alert"]["id"] for body in receiver.bodies] == [first.alert.id, later.alert.id]


def test_a_drift_that_persists_pages_once_per_cooldown(
    store: AlertStore, receiver: Receiver
) -> None:
    """Checked every 10 minutes for 2 hours, drifting all along: paged at 0 and at 60 minutes;
    the cool-down counts from the page, not from the latest repeat."""
    for minutes in range(0, 121, 10):
        store.raise_alert(drift(), now=T0 + 60 * minutes, cooldown_seconds=HOUR)
        deliver_due(store, receiver.url, now=T0 + 60 * minutes)
    assert [body["alert"]["first_at"] for body in receiver.bodies] == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert [alert.count for alert in reversed(store.list("dev"))] == [6, 6, 1]


def test_another_feature_or_a_more_severe_repeat_is_a_new_alert(store: AlertStore) -> None:
    first = store.raise_alert(drift("a"), now=T0, cooldown_seconds=HOUR)
    assert store.raise_alert(drift("b"), now=T0 + 1, cooldown_seconds=HOUR).new
    assert store.raise_alert(drift("a", env="prod"), now=T0 + 1, cooldown_seconds=HOUR).new
    assert store.raise_alert(drift(None), now=T0 + 1, cooldown_seconds=HOUR).new
    worse = store.raise_alert(drift("a", severity="critical"), now=T0 + 2, cooldown_seconds=HOUR)
    assert worse.new and worse.alert.id != first.alert.id
    # the next warning on "a" counts into the critical one, which stays critical
    calmer = store.raise_alert(drift("a"), now=T0 + 3, cooldown_seconds=HOUR)
    assert not calmer.new and calmer.alert.id == worse.alert.id
    assert calmer.alert.severity == "critical" and calmer.alert.count == 2


@pytest.fixture(scope="module")
def shared_receiver() -> Iterator[tuple[Receiver, httpx.Client]]:
    """One receiver and client for every example of a property test."""
    with running_receiver() as receiver, httpx.Client() as client:
        yield receiver, client


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.integers(0, 90).map(lambda minutes: 60.0 * minutes),
            st.sampled_from(["a", "b", None]),
        ),
        min_size=1,
        max_size=25,
    ),
    cooldown=st.sampled_from([0.0, 60.0, 1800.0, HOUR]),
)
def test_deliveries_equal_the_cooldown_separated_episodes(
    shared_receiver: tuple[Receiver, httpx.Client],
    events: list[tuple[float, str | None]],
    cooldown: float,
) -> None:
    """A monitor raising and delivering after every check pages once per episode: per feature,
    an occurrence at least a cool-down after the one that last paged starts a new episode."""
    receiver, client = shared_receiver
    receiver.requests.clear()
    expected, paged_at, now = 0, dict[str | None, float](), T0
    with tempfile.TemporaryDirectory() as folder, AlertStore(Path(folder) / "a.db") as store:
        for gap, feature in events:
            now += gap
            if feature not in paged_at or now - paged_at[feature] >= cooldown:
                expected, paged_at[feature] = expected + 1, now
            store.raise_alert(drift(feature), now=now, cooldown_seconds=cooldown)
            deliver_due(store, receiver.url, now=now, client=client)
        stored = store.list("dev")
    assert len(receiver.requests) == expected == len(stored)
    assert sum(alert.count for alert in stored) == len(events)


def test_receiver_down_then_back_gets_the_alert_later_exactly_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = tmp_path / "alerts.db"
    with AlertStore(path) as store:
        alert = store.raise_alert(drift(), now=T0, cooldown_seconds=HOUR).alert
        receiver.stop()  # connection refused from now on

        down = deliver_due(store, receiver.url, now=T0)
        assert (down.delivered, down.pending) == (0, 1)
        after_one = store.get(alert.id)
        assert after_one is not None and after_one.delivery.attempts == 1
        assert after_one.delivery.last_error and "ConnectError" in after_one.delivery.last_error
        first_retry = after_one.delivery.next_attempt_at
        assert first_retry is not None
        assert T0 + 0.8 * FIRST_RETRY_SECONDS <= first_retry <= T0 + FIRST_RETRY_SECONDS

        # not due before its back-off: no attempt is made or counted
        assert deliver_due(store, receiver.url, now=first_retry - 0.1).pending == 1
        deliver_due(store, receiver.url, now=first_retry)
        after_two = store.get(alert.id)
        assert after_two is not None and after_two.delivery.attempts == 2
        assert after_two.delivery.next_attempt_at is not None
        second_wait = after_two.delivery.next_attempt_at - first_retry
        assert 0.8 * 2 * FIRST_RETRY_SECONDS <= second_wait <= 2 * FIRST_RETRY_SECONDS

    # the monitor restarts (a new store on the same file) and the receiver is back on its port
    receiver.start()
    with AlertStore(path) as reopened:
        retry_at = after_two.delivery.next_attempt_at
        back = deliver_due(reopened, receiver.url, now=retry_at)
        assert (back.delivered, back.pending) == (1, 0)
        deliver_due(reopened, receiver.url, now=retry_at + 10 * HOUR)
        delivered = reopened.get(alert.id)
    assert len(receiver.requests) == 1
    assert delivered is not None and delivered.delivery.status == "delivered"
    assert delivered.delivery.attempts == 3 and delivered.delivery.delivered_at == retry_at


def test_server_error_is_retried_and_delivered_once_the_receiver_recovers(
    store: AlertStore, receiver: Receiver
) -> None:
    alert = store.raise_alert(drift(), now=T0, cooldown_seconds=HOUR).alert
    receiver.mode = "fail"
    assert deliver_due(store, receiver.url, now=T0).pending == 1
    failing = store.get(alert.id)
    assert failing is not None and failing.delivery.last_error == "HTTP 500: rollup_error"

    receiver.mode = "ok"
    assert deliver_due(store, receiver.url, now=T0 + 60).delivered == 1
    assert len(receiver.requests) == 2


def test_hanging_receiver_costs_one_timeout_per_pass_and_the_others_wait(
    store: AlertStore, receiver: Receiver
) -> None:
    ids = [
        store.raise_alert(drift(name), now=T0, cooldown_seconds=HOUR).alert.id
        for name in ("a", "b", "c")
    ]
    receiver.mode = "hang"
    result = deliver_due(store, receiver.url, now=T0, timeout=0.3)
    # it returned while the receiver was still holding the request: the timeout cut it short
    assert receiver.answered == 0 and len(receiver.requests) == 1
    assert (result.delivered, result.pending) == (0, 3)

    hung, *waiting = [store.get(alert_id) for alert_id in ids]
    assert hung is not None and hung.delivery.attempts == 1
    assert hung.delivery.last_error == "no answer within 0.3s"
    for alert in waiting:
        assert alert is not None and alert.delivery.attempts == 0
        assert alert.delivery.next_attempt_at == hung.delivery.next_attempt_at
    assert store.due_deliveries(T0 + 1) == []


def test_client_error_is_permanent_with_its_reason_and_never_retried(
    store: AlertStore, receiver: Receiver
) -> None:
    alert = store.raise_alert(drift(), now=T0, cooldown_seconds=HOUR).alert
    receiver.mode = "bad"
    result = deliver_due(store, receiver.url, now=T0)
    assert (result.delivered, result.failed, result.pending) == (0, 1, 0)
    for hours in range(1, 5):
        deliver_due(store, receiver.url, now=T0 + hours * HOUR)
    assert len(receiver.requests) == 1
    failed = store.get(alert.id)
    assert failed is not None and failed.delivery.status == "failed"
    assert failed.delivery.last_error == "HTTP 400: invalid_payload"
    assert failed.delivery.next_attempt_at is None


def test_rate_limited_receiver_is_retried_no_sooner_than_it_asked(
    store: AlertStore, receiver: Receiver
) -> None:
    alert = store.raise_alert(drift(), now=T0, cooldown_seconds=HOUR).alert
    receiver.mode = "rate"
    assert deliver_due(store, receiver.url, now=T0).pending == 1
    limited = store.get(alert.id)
    assert limited is not None and limited.delivery.next_attempt_at == T0 + 120
    assert limited.delivery.last_error == "HTTP 429: rate_limited"


def test_alerts_are_logged_one_line_each_and_without_webhook_only_logged(
    store: AlertStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="mlinfra.monitoring"):
        store.raise_alert(drift(), now=T0, cooldown_seconds=HOUR)
        store.raise_alert(drift(severity="critical"), now=T0 + 1, cooldown_seconds=HOUR)
        store.raise_alert(drift(severity="critical"), now=T0 + 2, cooldown_seconds=HOUR)
        result = deliver_due(store, "", now=T0 + 2)
    assert (result.skipped, result.pending) == (2, 0)
    lines = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "ERROR", "INFO"]
    assert all("\n" not in message for _, message in lines)
    assert lines[0][1].startswith("alert 1 [warning] dev feature_drift petal_length: ")
    assert lines[2][1].startswith("alert 2 repeated (2 times")
    skipped = store.get(1)
    assert skipped is not None and skipped.delivery.status == "skipped"
    assert skipped.delivery.last_error == "no webhook configured: logged only"


def test_webhook_url_is_never_logged_or_stored_whole(
    store: AlertStore, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    store.raise_alert(drift("a"), now=T0, cooldown_seconds=HOUR)
    store.raise_alert(drift("b"), now=T0, cooldown_seconds=HOUR)
    with caplog.at_level(logging.DEBUG):
        receiver.mode = "bad"
        deliver_due(store, receiver.url, now=T0)
        receiver.stop()
        deliver_due(store, receiver.url, now=T0)
        deliver_due(store, "https://user:pw@hooks.example.com/services/" + SECRET, now=T0 + HOUR)
    assert caplog.records and SECRET not in caplog.text and "pw@" not in caplog.text
    assert f"http://127.0.0.1:{receiver.port}/***" in caplog.text
    assert any(record.name == "httpx" for record in caplog.records)  # it logs URLs: masked
    for alert in store.list("dev"):
        assert SECRET not in alert.model_dump_json()


def test_mask_keeps_only_scheme_host_and_port() -> None:
    assert (
        mask_webhook_url("https://hooks.slack.com/services/T000/B000/XXXX")
        == "https://hooks.slack.com/***"
    )
    assert (
        mask_webhook_url("http://bob:pw@10.0.0.1:9000/hook?token=t") == "http://10.0.0.1:9000/***"
    )


@settings(max_examples=200, deadline=None)
@given(attempt=st.integers(1, 10_000), jitter=st.floats(0, 1, exclude_max=True))
def test_retry_delay_doubles_within_its_bounds(attempt: int, jitter: float) -> None:
    delay = retry_delay(attempt, jitter)
    assert 0.8 * FIRST_RETRY_SECONDS <= delay <= MAX_RETRY_SECONDS
    assert retry_delay(attempt + 1, jitter) >= delay
    assert (
        retry_delay(1, 0.0) == FIRST_RETRY_SECONDS and retry_delay(10_000, 0.0) == MAX_RETRY_SECONDS
    )


def test_payload_escapes_slack_markup_and_keeps_the_raw_fields(store: AlertStore) -> None:
    alert = store.raise_alert(drift("<!channel> & co"), now=T0, cooldown_seconds=HOUR).alert
    payload = json.loads(json.dumps(slack_payload(alert), allow_nan=False))
    rendered = json.dumps(payload["blocks"]) + payload["text"]
    assert "<!channel>" not in rendered and "&lt;!channel&gt; &amp; co" in rendered
    assert payload["alert"]["feature"] == "<!channel> & co"
    assert "delivery" not in payload["alert"]
    assert len(payload["blocks"][0]["text"]["text"]) <= 150


# -- acknowledging ------------------------------------------------------------------------------


def test_acknowledge_twice_says_so_and_a_repeat_raises_a_new_alert(store: AlertStore) -> None:
    first = store.raise_alert(drift(), now=T0, cooldown_seconds=HOUR).alert
    done = store.acknowledge(first.id, env="dev", by="ada", now=T0 + 60)
    assert not done.already and done.describe() == f"alert {first.id} acknowledged by ada"
    again = store.acknowledge(first.id, env="dev", by="bob", now=T0 + 120)
    assert again.already and again.describe() == f"alert {first.id} was already acknowledged by ada"
    assert again.alert.acknowledgement is not None and again.alert.acknowledgement.at == T0 + 60

    repeat = store.raise_alert(drift(), now=T0 + 180, cooldown_seconds=HOUR)
    assert repeat.new and repeat.alert.id != first.id
    assert [a.id for a in store.list("dev", include_acknowledged=False)] == [repeat.alert.id]
    assert [a.id for a in store.list("dev")] == [repeat.alert.id, first.id]
    assert [a.id for a in store.list("dev", limit=1)] == [repeat.alert.id]


def test_alert_acknowledged_before_delivery_is_not_sent(
    store: AlertStore, receiver: Receiver
) -> None:
    alert = store.raise_alert(drift(), now=T0, cooldown_seconds=HOUR).alert
    store.acknowledge(alert.id, env="dev", by="ada", now=T0 + 1)
    assert deliver_due(store, receiver.url, now=T0 + 2).pending == 0
    assert receiver.requests == []
    skipped = store.get(alert.id)
    assert skipped is not None and skipped.delivery.status == "skipped"


def test_acknowledging_an_unknown_id_is_one_line_naming_it_and_how_to_list(
    store: AlertStore,
) -> None:
    alert = store.raise_alert(drift(env="prod"), now=T0, cooldown_seconds=HOUR).alert
    for alert_id, env in ((999, "dev"), (alert.id, "dev")):
        with pytest.raises(AlertNotFoundError) as caught:
            store.acknowledge(alert_id, env=env, by="ada", now=T0)
        assert isinstance(caught.value, MlinfraError)
        assert str(caught.value) == (
            f"no alert {alert_id} in env 'dev'; `mlinfra alerts --env dev` lists them"
        )


# -- the store on disk --------------------------------------------------------------------------


def test_store_survives_reopen_with_pending_still_pending(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    with AlertStore(path) as store:
        raised = store.raise_alert(drift(), now=T0, cooldown_seconds=HOUR).alert
    assert path.stat().st_mode & 0o777 == 0o600
    with AlertStore(path) as reopened:
        assert reopened.get(raised.id) == raised
        assert [a.id for a in reopened.due_deliveries(T0)] == [raised.id]
        assert reopened.get(raised.id + 1) is None
        # grouping continues across the restart
        assert not reopened.raise_alert(drift(), now=T0 + 60, cooldown_seconds=HOUR).new


def test_damaged_store_is_one_line_state_error(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    path.write_bytes(b"not a database, just garbage " * 200)
    with pytest.raises(StateError) as caught:
        AlertStore(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "move alerts.db aside" in message


_DELIVER_IN_A_CHILD = """
import sys
from pathlib import Path
from mlinfra.monitoring._alerts import AlertStore
from mlinfra.monitoring._webhook import deliver_due
deliver_due(AlertStore(Path(sys.argv[1])), sys.argv[2], now=float(sys.argv[3]), timeout=60)
"""


def test_monitor_killed_mid_delivery_leaves_the_retry_scheduled(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A real process delivering to a hanging receiver is SIGKILLed mid-request: the attempt
    it recorded first makes the next monitor wait out the back-off, then deliver."""
    path = tmp_path / "alerts.db"
    with AlertStore(path) as store:
        alert = store.raise_alert(drift(), now=T0, cooldown_seconds=HOUR).alert
    receiver.mode = "hang"
    child = subprocess.Popen(
        [sys.executable, "-c", _DELIVER_IN_A_CHILD, str(path), receiver.url, str(T0)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert receiver.arrived.wait(60), "the child never reached the receiver"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    receiver.mode = "ok"
    receiver.release.set()

    with AlertStore(path) as store:
        left = store.get(alert.id)
        assert left is not None and left.delivery.status == "pending"
        assert left.delivery.attempts == 1 and left.delivery.next_attempt_at is not None
        assert deliver_due(store, receiver.url, now=T0 + 1).delivered == 0
        assert deliver_due(store, receiver.url, now=left.delivery.next_attempt_at).delivered == 1
    keys = {request["headers"]["Idempotency-Key"] for request in receiver.requests}
    assert len(receiver.requests) == 2 and keys == {f"mlinfra-dev-alert-{alert.id}"}
