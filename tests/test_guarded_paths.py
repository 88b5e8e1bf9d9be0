"""The bearer token that `mlinfra outputs --show-secrets` exports opens the guarded routes of the
env's real server, and nothing else does."""

from __future__ import annotations

import httpx
from _live_env import bring_up
from _serving import ROW
from conftest import IrisProject


def test_token_read_through_the_cli_opens_guarded_routes_of_the_real_server(
    iris_project: IrisProject,
) -> None:
    staging = bring_up(iris_project, "staging", models=1)  # serving.auth = true
    assert staging.token, "staging exports its token as serving_token"
    masked = staging.ok("outputs")
    assert masked["serving_token"] == "[secret]"
    assert staging.ok("deploy", "1")["stable"] == 1

    with_token = {"authorization": f"Bearer {staging.token}"}
    answered = staging.predict()
    assert answered.status_code == 200, answered.text
    assert answered.json() == {"predictions": [0]}
    assert answered.headers["x-model-version"] == "1"
    for path in ("/v2", "/metrics"):
        assert httpx.get(staging.url + path, headers=with_token, timeout=10).status_code == 200

    wrong = {"authorization": f"Bearer {staging.token}x"}
    for headers in ({}, wrong):
        body = {"instances": [ROW]}
        refused = httpx.post(f"{staging.url}/invocations", json=body, headers=headers, timeout=10)
        assert refused.status_code == 401
        assert refused.json() == {"error": "missing or wrong bearer token"}
        assert httpx.get(staging.url + "/v2", headers=headers, timeout=10).status_code == 401
