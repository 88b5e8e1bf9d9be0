"""Sticky A/B routing, from `mlinfra deploy --sticky-header` to the answers of the real server:
each user (header value) always gets the same variant, and users split by the canary's weight."""

from __future__ import annotations

from collections import Counter

import httpx
from _live_env import LiveEnv, bring_up
from conftest import IrisProject

USERS = [f"user-{number:03d}" for number in range(200)]  # fixed: the split is deterministic


def test_sticky_canary_from_the_cli_keeps_each_user_on_one_variant_split_by_weight(
    iris_project: IrisProject,
) -> None:
    dev = bring_up(iris_project)
    dev.ok("deploy", "1")
    started = dev.ok(
        "deploy", "2", "--steps", "30,100", "--sticky-header", "X-User", "--interval", "10m"
    )  # a window far longer than the test: the canary stays at 30%
    assert (started["phase"], started["sticky_header"]) == ("progressing", "X-User")
    table = dev.table()
    assert (table.canary, table.canary_weight, table.sticky_header) == (2, 30, "X-User")

    with httpx.Client() as client:
        first = {user: _variant(dev, user, client) for user in USERS}
        again = {user: _variant(dev, user, client) for user in reversed(USERS)}
    assert again == first, "the same header value always gets the same variant"
    split = Counter(version for version, _ in first.values())
    assert set(split) == {"1", "2"}
    assert 0.15 * len(USERS) <= split["2"] <= 0.45 * len(USERS), split  # about 30%
    assert {variant for _, variant in first.values()} == {"stable", "canary"}
    assert all((version == "2") == (variant == "canary") for version, variant in first.values())

    assert dev.ok("abort")["phase"] == "aborted"
    with httpx.Client() as client:
        assert {_variant(dev, user, client) for user in USERS} == {("1", "stable")}


def _variant(dev: LiveEnv, user: str, client: httpx.Client) -> tuple[str, str]:
    answer = dev.predict(headers={"x-user": user}, client=client)
    assert answer.status_code == 200, answer.text
    return answer.headers["x-model-version"], answer.headers["x-model-variant"]
