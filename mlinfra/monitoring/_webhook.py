"""Alerts to a webhook: Slack-compatible JSON, retried with back-off until the receiver takes it.

Each attempt is recorded before it is made (write the intent, do the work, record the result),
so a monitor killed mid-request retries after the back-off instead of at once, and alerts not
yet delivered are delivered by the next monitor. Delivery is at least once: a receiver that
took a request whose answer was lost gets it again, with the same `Idempotency-Key` header.
The URL is a secret (a Slack webhook URL is its own credential): only its host is ever shown.
"""

from __future__ import annotations

import logging
import random
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from ._alerts import Alert, AlertStore, Delivery

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "FIRST_RETRY_SECONDS",
    "MAX_RETRY_SECONDS",
    "DeliveryResult",
    "deliver_due",
    "mask_webhook_url",
    "retry_delay",
    "slack_payload",
]

log = logging.getLogger("mlinfra.monitoring")

DEFAULT_TIMEOUT_SECONDS = 5.0
"""Per phase (connect, send, wait for the answer): a hanging receiver costs one pass this much."""
FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 600.0
_JITTER_SHARE = 0.2
_MAX_DOUBLINGS = 20
# A 4xx says the request itself is wrong and repeating it cannot help; these two say "later".
_RETRYABLE_4XX = frozenset({408, 429})
_ERROR_CHARS = 200
_NO_WEBHOOK = "no webhook configured: logged only"

# Slack's limits on a header's text, a section's text and a field's text.
_HEADER_CHARS, _SECTION_CHARS, _FIELD_CHARS = 150, 3000, 2000
_KIND_TITLES = {
    "feature_drift": "Feature drift",
    "prediction_drift": "Prediction drift",
    "performance": "Performance drop",
    "dataset_drift": "Dataset drift",
    "log_dropped": "Prediction log dropped rows",
}


@dataclass(frozen=True)
class DeliveryResult:
    """What one `deliver_due` pass did; `pending` counts every alert still to be delivered
    after it, due now or later."""

    delivered: int = 0
    failed: int = 0
    skipped: int = 0
    pending: int = 0


@dataclass(frozen=True)
class _Outcome:
    result: Literal["delivered", "retry", "failed"]
    error: str | None = None
    retry_after: float | None = None


def retry_delay(attempt: int, jitter: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, ...): doubling from 5 s to
    10 min; `jitter` in [0, 1) takes up to a fifth off, so monitors do not retry in step."""
    doublings = min(max(attempt - 1, 0), _MAX_DOUBLINGS)
    base = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2**doublings)
    return base * (1 - _JITTER_SHARE * jitter)


def mask_webhook_url(url: str) -> str:
    """The URL as it may be logged: scheme and host, the path (the secret part) masked."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a port number: not worth showing either
        port = ""
    return (
        f"{parts.scheme}://[{host}]{port}/***"
        if ":" in host
        else f"{parts.scheme}://{host}{port}/***"
    )


def deliver_due(
    store: AlertStore,
    url: str,
    *,
    now: float,
    client: httpx.Client | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    rng: random.Random | None = None,
) -> DeliveryResult:
    """Send the alerts due at `now` to `url`, oldest first. At the first failure worth retrying
    the pass stops and the others wait with it, so a receiver that is down or hangs costs one
    attempt per pass. With no `url` the alerts are only in the log (`raise_alert` wrote them)."""
    due = store.due_deliveries(now)
    if not url:
        for alert in due:
            skipped = {"status": "skipped", "next_attempt_at": None, "last_error": _NO_WEBHOOK}
            store.save_delivery(alert.id, alert.delivery.model_copy(update=skipped))
        return DeliveryResult(skipped=len(due), pending=store.pending_count())
    if not due:
        return DeliveryResult(pending=store.pending_count())
    _URL_FILTER.urls.add(url)
    jitter = (rng or random.Random()).random
    delivered = failed = 0
    with nullcontext(client) if client is not None else httpx.Client(timeout=timeout) as http:
        for position, alert in enumerate(due):
            delivery = _attempt(store, http, url, alert, now=now, timeout=timeout, jitter=jitter())
            delivered += delivery.status == "delivered"
            failed += delivery.status == "failed"
            if delivery.status == "pending":
                assert delivery.next_attempt_at is not None
                later = [waiting.id for waiting in due[position + 1 :]]
                store.postpone(later, until=delivery.next_attempt_at)
                break
    return DeliveryResult(delivered=delivered, failed=failed, pending=store.pending_count())


def _attempt(
    store: AlertStore,
    http: httpx.Client,
    url: str,
    alert: Alert,
    *,
    now: float,
    timeout: float,
    jitter: float,
) -> Delivery:
    """One attempt at `alert`, recorded before and after; what it left, as stored."""
    attempts = alert.delivery.attempts + 1
    retry_at = now + retry_delay(attempts, jitter)
    intent = alert.delivery.model_copy(update={"attempts": attempts, "next_attempt_at": retry_at})
    store.save_delivery(alert.id, intent)
    outcome = _post(http, url, alert, timeout)
    masked = mask_webhook_url(url)
    if outcome.result == "delivered":
        result = intent.model_copy(
            update={"status": "delivered", "next_attempt_at": None, "delivered_at": now}
        )
        store.save_delivery(alert.id, result)
        log.info("alert %d delivered to %s (attempt %d)", alert.id, masked, attempts)
        return result
    if outcome.result == "failed":
        result = intent.model_copy(
            update={"status": "failed", "next_attempt_at": None, "last_error": outcome.error}
        )
        store.save_delivery(alert.id, result)
        log.error(
            "alert %d refused by the webhook %s: %s; not retried, check monitoring.webhook",
            alert.id,
            masked,
            outcome.error,
        )
        return result
    if outcome.retry_after is not None:
        retry_at = max(retry_at, now + min(outcome.retry_after, MAX_RETRY_SECONDS))
    result = intent.model_copy(update={"next_attempt_at": retry_at, "last_error": outcome.error})
    store.save_delivery(alert.id, result)
    log.warning(
        "alert %d not delivered to %s (attempt %d): %s; retrying in %.0fs",
        alert.id,
        masked,
        attempts,
        outcome.error,
        retry_at - now,
    )
    return result


def _post(http: httpx.Client, url: str, alert: Alert, timeout: float) -> _Outcome:
    headers = {"Idempotency-Key": f"mlinfra-{alert.env}-alert-{alert.id}"}
    try:
        response = http.post(url, json=slack_payload(alert), headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        return _Outcome("retry", f"no answer within {timeout:g}s")
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        return _Outcome("failed", f"the URL is not usable: {_scrub(str(exc), url)}")
    except httpx.TransportError as exc:
        return _Outcome("retry", _scrub(f"{type(exc).__name__}: {exc}", url))
    if response.is_success:
        return _Outcome("delivered")
    error = _scrub(f"HTTP {response.status_code}: {response.text}", url)
    if response.status_code >= 500 or response.status_code in _RETRYABLE_4XX:
        return _Outcome("retry", error, _retry_after(response))
    return _Outcome("failed", error)


def _retry_after(response: httpx.Response) -> float | None:
    """The receiver's Retry-After in seconds; its date form is rare enough to be ignored."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _scrub(text: str, url: str) -> str:
    """`text` as one short line with the URL's secret part masked."""
    return " ".join(_masked(text, url).split())[:_ERROR_CHARS]


def _masked(text: str, url: str) -> str:
    """`text` with the URL, as given or as httpx spells it, and its path masked."""
    path = urlsplit(url).path
    try:
        spelled = str(httpx.URL(url))
    except httpx.InvalidURL:
        spelled = url
    for secret in (url, spelled, path if len(path) > 1 else ""):
        if secret:
            text = text.replace(secret, mask_webhook_url(url))
    return text


class _WebhookUrlFilter(logging.Filter):
    """httpx logs each request with its whole URL at INFO; for a webhook that is the secret,
    so records that hold a webhook URL in use are rewritten with it masked."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record; logging reports it itself
            return True
        masked = message
        for url in self.urls:
            masked = _masked(masked, url)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


_URL_FILTER = _WebhookUrlFilter()
logging.getLogger("httpx").addFilter(_URL_FILTER)


# -- the payload -----------------------------------------------------------------------------


def slack_payload(alert: Alert) -> dict[str, Any]:
    """A Slack message (`text` for notifications, `blocks` to read) with the alert's fields as
    JSON in `alert`, for receivers other than Slack (Slack ignores the key)."""
    title = f"{_KIND_TITLES.get(alert.kind, alert.kind)} in {alert.env} ({alert.severity})"
    ack = f"`mlinfra alerts ack {alert.id} --env {alert.env}`"
    figure = f"{alert.statistic} = {alert.value:.4g} (threshold {alert.threshold:.4g})"
    fields = [
        ("Feature", alert.feature or "(whole model)"),
        ("Statistic", figure),
        (
            "Window",
            f"{alert.window.label}: {_when(alert.window.start)} to {_when(alert.window.end)}",
        ),
        ("Seen", f"{_times(alert.count)} since {_when(alert.first_at)}"),
    ]
    return {
        "text": _escape(f"[{alert.severity}] {alert.env}: {alert.message} (alert {alert.id})"),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:_HEADER_CHARS]}},
            {"type": "section", "text": _mrkdwn(_escape(alert.message), _SECTION_CHARS)},
            {
                "type": "section",
                "fields": [
                    _mrkdwn(f"*{name}*\n{_escape(value)}", _FIELD_CHARS) for name, value in fields
                ],
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"alert {alert.id}; acknowledge with {ack}"}
                ],
            },
        ],
        "alert": alert.model_dump(mode="json", exclude={"delivery"}),
    }


def _mrkdwn(text: str, limit: int) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text[:limit]}


def _escape(text: str) -> str:
    """Slack's three control characters, so a feature name never becomes a link or mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")
