"""The RegistryStore provider on real registries (SQLite, artifacts, real scikit-learn models):
what it holds in words, a new path moving everything there, and its own delete refusing to lose
versions, as it must where the pulumi CLI (not runnable here) drives it."""

from __future__ import annotations

from pathlib import Path

import pytest
from _serving import new_registry, register, serve_table
from sklearn.linear_model import LogisticRegression

from mlinfra.engine import DataMove
from mlinfra.engine._data import allowing_data_loss
from mlinfra.errors import ProtectedResourceError, RolloutConflictError
from mlinfra.providers.local import RegistryStoreProvider
from mlinfra.providers.local._registry_move import describe_versions
from mlinfra.registry import Registry
from mlinfra.rollout import Rollout
from mlinfra.rollout._store import RolloutStore
from mlinfra.serving import deployment_dir, read_deployment


def _model(c: float) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=500)


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """dev's registry: iris v1 and v2, dev's and staging's aliases, dev serving v2."""
    root = new_registry(tmp_path / "old")
    register(root, _model(0.1))
    register(root, _model(1.0))
    with Registry.open(root) as registry:
        registry.set_alias("iris", "champion", 2, env="dev", reason="best")
        registry.set_alias("iris", "challenger", 1, env="dev", reason="older")
        registry.set_alias("iris", "champion", 1, env="staging", reason="theirs")
    serve_table(root, "dev", stable=2)
    RolloutStore(deployment_dir(root, "dev")).record({"action": "deploy", "to": 2})
    return root


def _move(old: Path, target: Path) -> tuple[RegistryStoreProvider, dict, dict]:
    provider = RegistryStoreProvider()
    outs = provider.create({"path": str(old), "env": "dev"}).outs
    news = {"path": str(target), "env": "dev"}
    return provider, outs, news


def test_a_new_path_is_an_update_that_moves_versions_aliases_and_deployment(
    old: Path, tmp_path: Path
) -> None:
    shared = new_registry(tmp_path / "shared")
    register(shared, _model(10.0))  # another env's iris v1: the moved versions become v2, v3
    provider, outs, news = _move(old, shared)
    diff = provider.diff(str(old), outs, news)
    assert diff.changes and diff.replaces == []
    assert provider.data_move(str(old), outs, news) == DataMove(
        "2 model versions (iris v1-v2)", str(old), str(shared)
    )

    moved = provider.update(str(old), outs, news).outs
    assert moved["path"] == str(shared) and moved["missing"] == []
    with Registry.open(shared) as registry:
        origins = {
            v.version: v.lineage.get("origin", {}).get("version") for v in registry.list_versions()
        }
        assert origins == {1: None, 2: 1, 3: 2}
        assert registry.aliases("iris", env="dev") == {"champion": 3, "challenger": 2}
        assert registry.aliases("iris", env="staging") == {}, "only dev's aliases move"
        (event,) = registry.alias_history("iris", env="dev", alias="champion")
        assert event.reason == f"env dev moved from the registry at {old} (v2 there)"
    table = read_deployment(deployment_dir(shared, "dev"))
    assert table is not None and table.stable == 3
    history = RolloutStore(deployment_dir(shared, "dev")).history()
    assert [e["action"] for e in history] == ["deploy", "move"]
    assert history[-1]["versions"] == {"iris": {"1": 2, "2": 3}}

    with Registry.open(old) as registry:  # left as it was
        assert [v.version for v in registry.list_versions()] == [2, 1]
        assert registry.aliases("iris", env="dev") == {"challenger": 1, "champion": 2}
    assert read_deployment(deployment_dir(old, "dev")).stable == 2  # type: ignore[union-attr]

    provider.update(str(old), outs, news)  # a move cut off by a crash is simply run again
    with Registry.open(shared) as registry:
        assert len(registry.list_versions()) == 3
        assert len(registry.alias_history("iris", env="dev")) == 2
    read = provider.read(str(old), moved)  # the id stays where it was made; read follows path
    assert read.id == str(old) and read.outs["path"] == str(shared)


def test_a_move_is_refused_while_a_rollout_is_in_progress(old: Path, tmp_path: Path) -> None:
    RolloutStore(deployment_dir(old, "dev")).save(
        Rollout(
            id="r1",
            env="dev",
            model="iris",
            stable=1,
            canary=2,
            steps=(10, 100),
            interval_seconds=30,
            actor="tester",
        )
    )
    provider, outs, news = _move(old, tmp_path / "shared")
    with pytest.raises(
        RolloutConflictError, match="a rollout of iris v2 is in progress in env 'dev'"
    ):
        provider.update(str(old), outs, news)
    with Registry.open(tmp_path / "shared") as registry:
        assert registry.models() == [], "nothing was copied"


def test_data_at_risk_is_read_live_from_the_registry(tmp_path: Path) -> None:
    provider = RegistryStoreProvider()
    root = tmp_path / "registry"
    outs = provider.create({"path": str(root)}).outs
    assert provider.data_at_risk(str(root), outs) is None, "an empty registry holds nothing"
    register(root, _model(1.0))
    held = provider.data_at_risk(str(root), outs)
    assert held is not None and str(held) == f"1 model version (iris v1) at {root}"


def test_provider_delete_refuses_to_lose_versions_as_under_the_pulumi_cli(tmp_path: Path) -> None:
    """Under the pulumi engine no mlinfra engine asks first: the provider's delete itself
    refuses, unless the run was given --delete-data (inherited as MLINFRA_DELETE_DATA)."""
    provider = RegistryStoreProvider()
    root = tmp_path / "registry"
    outs = provider.create({"path": str(root)}).outs
    register(root, _model(1.0))
    with pytest.raises(ProtectedResourceError, match="not deleted: it holds 1 model version"):
        provider.delete(str(root), outs)
    assert (root / "registry.db").is_file()
    with allowing_data_loss(True):
        provider.delete(str(root), outs)
    assert not root.exists()


def test_versions_are_described_by_model_and_range() -> None:
    assert describe_versions({"iris": [5, 1, 2, 3, 7]}) == "5 model versions (iris v1-v3, v5, v7)"
    many = {"a": [1], "b": [1], "c": [2, 3], "d": [9]}
    assert describe_versions(many) == "5 model versions (a v1, b v1, c v2-v3, 1 more model)"
    assert describe_versions({"iris": [1, 3, 5, 7, 9]}).endswith("(iris v1, v3, v5, ...)")


def test_a_move_keeps_the_history_the_target_already_held_for_the_env(
    old: Path, tmp_path: Path
) -> None:
    shared = new_registry(tmp_path / "shared")
    earlier = RolloutStore(deployment_dir(shared, "dev"))
    earlier.record({"action": "deploy", "to": 7, "reason": "when dev used this registry"})
    provider, outs, news = _move(old, shared)
    provider.update(str(old), outs, news)
    provider.update(str(old), outs, news)  # a move retried after a crash
    actions = [(e["action"], e.get("to")) for e in earlier.history()]
    assert actions[:2] == [("deploy", 7), ("deploy", 2)], "nothing the target held is lost"
    assert actions.count(("deploy", 2)) == 1, "each event once"
