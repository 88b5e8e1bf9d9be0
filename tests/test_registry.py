"""The model registry on a real SQLite file and artifact directory, with real sklearn models."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.tree import DecisionTreeClassifier

import mlinfra.registry as registry_api
from mlinfra.data import infer_schema, write_sample
from mlinfra.errors import ConfigError
from mlinfra.registry import (
    AliasConflictError,
    ModelNotFoundError,
    NewVersion,
    Registry,
    RegistryNotFoundError,
    RegistrySchemaError,
    TamperedArtifactError,
    UntrustedArtifactError,
    dump_model,
    initialize,
)

IRIS = load_iris(as_frame=True)


class Doubler(TransformerMixin, BaseEstimator):
    """A user's own transformer: skops does not know it, so it must be trusted by name."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray(X) * 2


def new_version(model: object | None = None, *, name: str = "iris", **extra: object) -> NewVersion:
    estimator = model if model is not None else DecisionTreeClassifier(max_depth=2, random_state=0)
    estimator.fit(IRIS.data, IRIS.target)
    fields = {
        "model": name,
        "task": "classification",
        "env": "dev",
        "model_bytes": dump_model(estimator),
        "params": {"max_depth": 2},
        "metrics": {"accuracy": 0.95},
        "lineage": {"git_commit": "abc", "data_hash": "def"},
        "documents": {"schema": infer_schema(IRIS.data, IRIS.target).model_dump()},
        "reference_sample": write_sample(IRIS.data, rows=10),
    }
    fields.update(extra)
    return NewVersion(**fields)  # type: ignore[arg-type]


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    initialize(tmp_path / "registry")
    with Registry.open(tmp_path / "registry") as opened:
        yield opened


def test_public_api_is_the_documented_surface() -> None:
    assert set(registry_api.__all__) == {
        "ARTIFACTS_DIR", "DATABASE_FILE", "AliasConflictError", "AliasEvent",
        "ArtifactRefusedError",
        "MetadataStore", "ModelNotFoundError", "ModelVersion", "NewVersion", "Registry",
        "RegistryNotFoundError", "RegistrySchemaError", "Report", "TamperedArtifactError",
        "Transfer", "UntrustedArtifactError", "VersionSummary", "copy_version", "current_user",
        "dump_model", "initialize", "same_registry",
    }  # fmt: skip


def test_initialize_makes_private_wal_database_and_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    initialize(root)
    database = root / "registry.db"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert (root / "artifacts").is_dir()
    with Registry.open(root) as registry:
        registry.register(new_version())
    initialize(root)  # a second `up` must not wipe anything
    with Registry.open(root) as registry:
        assert [v.version for v in registry.list_versions("iris")] == [1]
    mode = sqlite3.connect(database).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_open_without_registry_tells_user_to_bring_env_up(tmp_path: Path) -> None:
    with pytest.raises(RegistryNotFoundError, match="mlinfra up"):
        Registry.open(tmp_path / "nothing")


def test_open_refuses_database_from_newer_mlinfra(tmp_path: Path) -> None:
    initialize(tmp_path)
    sqlite3.connect(tmp_path / "registry.db").execute("PRAGMA user_version = 99")
    with pytest.raises(RegistrySchemaError, match="has schema v99, .*: upgrade mlinfra$"):
        Registry.open(tmp_path)


# The registry.db of the first release: schema v1, before `versions` had its listing columns.
_V1_TABLES = """
CREATE TABLE models (name TEXT PRIMARY KEY, task TEXT NOT NULL, last_version INTEGER NOT NULL,
    created_at TEXT NOT NULL);
CREATE TABLE versions (model TEXT NOT NULL REFERENCES models(name), version INTEGER NOT NULL,
    env TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL, artifact_size INTEGER NOT NULL, reference_sha256 TEXT,
    params TEXT NOT NULL, metrics TEXT NOT NULL, lineage TEXT NOT NULL,
    trusted_types TEXT NOT NULL, PRIMARY KEY (model, version));
INSERT INTO models VALUES ('iris', 'classification', 1, '2026-01-01T00:00:00Z');
INSERT INTO versions VALUES ('iris', 1, 'dev', '2026-01-01T00:00:00Z', 'ci', 'ab', 1, NULL,
    '{}', '{}', '{}', '[]');
PRAGMA user_version = 1;
"""


def test_registry_from_older_release_is_refused_with_what_to_do_not_stamped(
    tmp_path: Path,
) -> None:
    (tmp_path / "artifacts").mkdir()
    with sqlite3.connect(tmp_path / "registry.db") as db:
        db.executescript(_V1_TABLES)
    expected = (
        f"registry at {tmp_path} has schema v1, this mlinfra needs v2: use the mlinfra release "
        "that wrote it, or move it aside and run `mlinfra up` to start a new registry"
    )
    with pytest.raises(RegistrySchemaError) as opened:
        Registry.open(tmp_path)
    assert str(opened.value) == expected and opened.value.exit_code == 4
    with pytest.raises(RegistrySchemaError) as upped:  # what `mlinfra up` calls
        initialize(tmp_path)
    assert str(upped.value) == expected
    with sqlite3.connect(tmp_path / "registry.db") as db:
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
        assert db.execute("SELECT model, version FROM versions").fetchall() == [("iris", 1)]


def test_database_that_is_not_a_registry_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "registry.db") as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    for step in (Registry.open, initialize):
        with pytest.raises(RegistryNotFoundError, match="is not an mlinfra registry"):
            step(tmp_path)


def test_versions_are_numbered_per_model_and_load_real_models(registry: Registry) -> None:
    first = registry.register(new_version())
    second = registry.register(new_version(LogisticRegression(max_iter=500)))
    other = registry.register(new_version(name="other"))
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert registry.models() == ["iris", "other"]
    assert [v.version for v in registry.list_versions("iris")] == [2, 1]
    assert len(registry.list_versions()) == 3
    loaded = registry.load(registry.get("iris", 2))
    assert isinstance(loaded, LogisticRegression)
    assert (loaded.predict(IRIS.data) == IRIS.target).mean() > 0.9
    assert second.params == {"max_depth": 2} and second.lineage["git_commit"] == "abc"
    assert second.created_by and second.created_at.endswith("+00:00")


def test_summaries_list_what_a_table_shows_without_documents(registry: Registry) -> None:
    lineage = {"metric": "f1", "git_commit": "c0ffee", "git_dirty": True, "data_hash": "d"}
    registry.register(new_version(metrics={"f1": 0.8, "accuracy": 0.9}, lineage=lineage))
    registry.register(new_version(name="other", tags={"team": "risk"}, lineage={}))
    first, second = registry.summaries()
    assert (first.model, first.metric, first.score, first.git_dirty) == ("iris", "f1", 0.8, True)
    assert (second.model, second.metric, second.score, second.tags) == (
        "other",
        None,
        None,
        {"team": "risk"},
    )
    assert first.to_dict()["git_commit"] == "c0ffee"
    assert [s.version for s in registry.summaries("iris", limit=1)] == [1]


def test_documents_schema_and_reference_sample_are_read_back(registry: Registry) -> None:
    version = registry.register(new_version())
    schema = registry.schema(version)
    assert [c["name"] for c in schema["columns"]] == list(IRIS.data.columns)
    sample = registry.reference_sample(version)
    assert sample.shape == (10, 4)
    assert list(sample.dtypes) == list(IRIS.data.dtypes)
    assert registry.importances(version) is None


def test_resolve_takes_numbers_v_prefix_latest_and_env_aliases(registry: Registry) -> None:
    registry.register(new_version())
    registry.register(new_version())
    registry.set_alias("iris", "champion", 1, env="staging", reason="first")
    assert registry.resolve("iris", 2).version == 2
    assert registry.resolve("iris", "v1").version == 1
    assert registry.resolve("iris", "latest").version == 2
    assert registry.resolve("iris", "champion", env="staging").version == 1
    with pytest.raises(ModelNotFoundError, match="aliases there: none"):
        registry.resolve("iris", "champion", env="dev")  # aliases are per env
    with pytest.raises(ConfigError, match="--env"):
        registry.resolve("iris", "champion")
    with pytest.raises(ModelNotFoundError, match="no version 7"):
        registry.resolve("iris", "7")
    with pytest.raises(ModelNotFoundError, match="no version 99999999999999999999"):
        registry.resolve("iris", "v99999999999999999999")  # beyond SQLite's integers
    with pytest.raises(ModelNotFoundError):
        registry.resolve("iris", "9" * 5000, env="dev")  # beyond what int() reads
    with pytest.raises(ModelNotFoundError, match="models: iris"):
        registry.resolve("nope", "1")


def test_alias_moves_are_audited_with_who_when_why_and_from(registry: Registry) -> None:
    registry.register(new_version())
    registry.register(new_version())
    registry.set_alias("iris", "champion", 1, env="prod", reason="first release", actor="ana")
    registry.set_alias("iris", "champion", 2, env="prod", reason="better f1", actor="bo")
    registry.set_alias("iris", "champion", 1, env="dev", reason="dev pin", actor="cy")
    registry.remove_alias("iris", "champion", env="prod", reason="incident 12", actor="di")
    history = registry.alias_history("iris", env="prod")
    assert [(e.from_version, e.to_version, e.actor, e.reason) for e in history] == [
        (None, 1, "ana", "first release"),
        (1, 2, "bo", "better f1"),
        (2, None, "di", "incident 12"),
    ]
    assert all(event.at for event in history)
    assert registry.aliases("iris", env="prod") == {}
    assert registry.aliases("iris", env="dev") == {"champion": 1}
    assert len(registry.alias_history("iris")) == 4


def test_alias_compare_and_set_refuses_a_moved_alias(registry: Registry) -> None:
    registry.register(new_version())
    registry.register(new_version())
    registry.set_alias("iris", "champion", 1, env="prod", reason="r", expected=None)
    with pytest.raises(AliasConflictError, match="points to 1, not 2"):
        registry.set_alias("iris", "champion", 2, env="prod", reason="r", expected=2)
    registry.set_alias("iris", "champion", 2, env="prod", reason="r", expected=1)
    assert registry.aliases("iris", env="prod") == {"champion": 2}


@pytest.mark.parametrize("alias", ["3", "v3", "latest", "Champion", "-x", ""])
def test_alias_names_that_would_be_ambiguous_are_refused(registry: Registry, alias: str) -> None:
    registry.register(new_version())
    with pytest.raises(ConfigError, match="alias"):
        registry.set_alias("iris", alias, 1, env="dev", reason="r")


def test_alias_to_missing_version_is_refused_and_not_audited(registry: Registry) -> None:
    registry.register(new_version())
    with pytest.raises(ModelNotFoundError):
        registry.set_alias("iris", "champion", 5, env="dev", reason="r")
    assert registry.alias_history("iris") == []


def test_tags_are_set_replaced_and_removed(registry: Registry) -> None:
    version = registry.register(new_version(tags={"team": "fraud"}))
    assert version.tags == {"team": "fraud"}
    version = registry.tag(version, {"reviewed": "yes", "team": "risk"})
    assert version.tags == {"reviewed": "yes", "team": "risk"}
    version = registry.tag(version, remove=["team"])
    assert version.tags == {"reviewed": "yes"}
    with pytest.raises(ConfigError, match="tag key"):
        registry.tag(version, {"bad key": "x"})


def test_reports_are_stored_as_json_and_markdown(registry: Registry) -> None:
    version = registry.register(new_version())
    registry.add_report(
        version, env="dev", kind="evaluation", passed=False, body={"a": 1}, markdown="# r"
    )
    (report,) = registry.reports(version)
    assert (report.passed, report.body, report.markdown, report.kind) == (
        False,
        {"a": 1},
        "# r",
        "evaluation",
    )


def test_tampered_artifact_is_refused(registry: Registry) -> None:
    version = registry.register(new_version())
    path = registry.root / "artifacts" / version.artifact_sha256[:2] / version.artifact_sha256[2:]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TamperedArtifactError, match="modified after registration"):
        registry.load(version)
    path.unlink()
    with pytest.raises(TamperedArtifactError, match="missing"):
        registry.load(version)


def test_registering_the_same_bytes_again_replaces_a_tampered_artifact(
    registry: Registry,
) -> None:
    draft = new_version()
    first = registry.register(draft)
    path = registry.root / "artifacts" / first.artifact_sha256[:2] / first.artifact_sha256[2:]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    second = registry.register(draft)
    assert second.artifact_sha256 == first.artifact_sha256
    assert isinstance(registry.load(second), DecisionTreeClassifier)


def test_model_with_untrusted_function_is_refused_at_registration(registry: Registry) -> None:
    evil = make_pipeline(FunctionTransformer(eval), LogisticRegression())
    draft = new_version(DecisionTreeClassifier())
    draft = NewVersion(**{**draft.__dict__, "model_bytes": dump_model(evil)})
    with pytest.raises(UntrustedArtifactError, match=r"builtins\.eval"):
        registry.register(draft)
    assert registry.models() == []


def test_artifact_swapped_with_matching_hash_is_still_refused_by_type_check(
    registry: Registry,
) -> None:
    """An attacker who can write artifacts and database: the skops type check still refuses."""
    version = registry.register(new_version())
    evil = dump_model(make_pipeline(FunctionTransformer(eval), LogisticRegression()))
    digest = registry._artifacts.put(evil)
    database = sqlite3.connect(registry.root / "registry.db")
    with database:
        database.execute("UPDATE versions SET artifact_sha256 = ?", (digest,))
    with pytest.raises(UntrustedArtifactError, match=r"builtins\.eval"):
        registry.load(registry.get("iris", version.version))


def test_users_own_class_loads_only_when_listed_as_trusted(registry: Registry) -> None:
    own = f"{Doubler.__module__}.Doubler"
    model = make_pipeline(Doubler(), LogisticRegression(max_iter=500))
    with pytest.raises(UntrustedArtifactError, match="Doubler"):
        registry.register(new_version(model))
    version = registry.register(new_version(model, trusted_types=[own]))
    assert version.trusted_types == [own]
    assert registry.load(version).predict(IRIS.data[:3]).shape == (3,)
    with pytest.raises(UntrustedArtifactError, match="Doubler"):
        registry.load(version, trusted=[])


def test_one_registry_is_shared_by_threads(registry: Registry) -> None:
    registry.register(new_version())
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                registry.set_alias("iris", "champion", 1, env="dev", reason="thread")
                assert registry.resolve("iris", "champion", env="dev").version == 1
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(registry.alias_history("iris")) == 80


def test_registry_sees_versions_written_by_another_handle(tmp_path: Path) -> None:
    initialize(tmp_path)
    long_lived = Registry.open(tmp_path)
    assert long_lived.models() == []
    with Registry.open(tmp_path) as other:
        other.register(new_version())
    assert long_lived.latest("iris").version == 1
    long_lived.close()
    assert os.listdir(tmp_path / "artifacts")


def _second_registry(tmp_path: Path, name: str = "staging") -> Registry:
    initialize(tmp_path / name)
    return Registry.open(tmp_path / name)


def test_copy_version_brings_everything_and_links_its_origin(
    registry: Registry, tmp_path: Path
) -> None:
    first = registry.register(new_version(tags={"team": "ml"}))
    registry.add_report(
        first, env="dev", kind="evaluation", passed=True, body={"a": 1}, markdown="#"
    )
    with _second_registry(tmp_path) as staging:
        staging.register(new_version(DecisionTreeClassifier(max_depth=1, random_state=0)))
        moved = registry_api.copy_version(
            registry, staging, first, source_env="dev", target_env="staging", actor="ci"
        )
        assert moved.copied and moved.version.version == 2  # numbered in its new home
        copy = moved.version
        assert copy.artifact_sha256 == first.artifact_sha256 and copy.env == "staging"
        assert copy.created_by == "ci" and copy.tags == {"team": "ml"}
        assert (copy.params, copy.metrics) == (first.params, first.metrics)
        assert copy.lineage["git_commit"] == "abc"
        assert copy.lineage["origin"] == {
            "registry": str(registry.root.resolve()),
            "env": "dev",
            "version": 1,
            "artifact_sha256": first.artifact_sha256,
        }
        assert staging.documents(copy) == registry.documents(first)
        assert staging.reference_bytes(copy) == registry.reference_bytes(first)
        assert [(r.env, r.body) for r in staging.reports(copy)] == [("dev", {"a": 1})]
        assert (
            staging.load(copy).predict(IRIS.data[:3]).tolist()
            == registry.load(first).predict(IRIS.data[:3]).tolist()
        )
        again = registry_api.copy_version(
            registry, staging, first, source_env="dev", target_env="staging"
        )
        assert not again.copied and again.version.version == 2
        # Retrained to identical bytes: another version, copied in its own right.
        same_bytes = registry.register(new_version(model_bytes=registry.artifact(first)))
        assert same_bytes.artifact_sha256 == first.artifact_sha256
        other = registry_api.copy_version(
            registry, staging, same_bytes, source_env="dev", target_env="staging"
        )
        assert other.copied and other.version.lineage["origin"]["version"] == 2
        assert [v.version for v in staging.list_versions("iris")] == [3, 2, 1]


def test_copy_within_one_registry_is_the_version_itself(registry: Registry) -> None:
    first = registry.register(new_version())
    with Registry.open(registry.root) as same:
        moved = registry_api.copy_version(
            registry, same, first, source_env="dev", target_env="prod"
        )
    assert not moved.copied and moved.version == first


def test_copy_of_a_tampered_artifact_is_refused_and_copies_nothing(
    registry: Registry, tmp_path: Path
) -> None:
    first = registry.register(new_version())
    blob = registry.root / "artifacts" / first.artifact_sha256[:2] / first.artifact_sha256[2:]
    blob.write_bytes(blob.read_bytes() + b"x")
    with _second_registry(tmp_path) as staging:
        with pytest.raises(TamperedArtifactError):
            registry_api.copy_version(
                registry, staging, first, source_env="dev", target_env="staging"
            )
        assert staging.models() == []


def test_a_copy_of_a_copy_keeps_the_whole_chain(registry: Registry, tmp_path: Path) -> None:
    first = registry.register(new_version())
    with _second_registry(tmp_path) as staging, _second_registry(tmp_path, "prod") as prod:
        in_staging = registry_api.copy_version(
            registry, staging, first, source_env="dev", target_env="staging"
        ).version
        in_prod = registry_api.copy_version(
            staging, prod, in_staging, source_env="staging", target_env="prod"
        ).version
    assert in_prod.lineage["origin"]["env"] == "staging"
    assert in_prod.lineage["origin"]["origin"]["env"] == "dev"


def test_ordinary_pipelines_holding_numpy_dtypes_need_no_trusted_types(registry: Registry) -> None:
    from sklearn.impute import SimpleImputer

    version = registry.register(
        new_version(make_pipeline(SimpleImputer(), LogisticRegression(max_iter=1000)))
    )
    assert registry.load(version).predict(IRIS.data[:2]).shape == (2,)


def test_refusal_names_the_models_own_section(registry: Registry) -> None:
    doubled = make_pipeline(Doubler(), LogisticRegression(max_iter=1000))
    with pytest.raises(UntrustedArtifactError, match=r"\[models.iris\] trusted_types"):
        registry.register(new_version(doubled))


def test_a_copy_cut_off_before_its_reports_gets_them_from_the_next_copy(
    registry: Registry, tmp_path: Path
) -> None:
    first = registry.register(new_version())
    registry.add_report(
        first, env="dev", kind="evaluation", passed=True, body={"a": 1}, markdown=""
    )
    with _second_registry(tmp_path) as staging:
        bare = staging.register(  # what a copy killed after registering left
            new_version(
                model_bytes=registry.artifact(first),
                lineage={
                    "origin": {
                        "registry": str(registry.root.resolve()),
                        "env": "dev",
                        "version": 1,
                        "artifact_sha256": first.artifact_sha256,
                    }
                },
            )
        )
        again = registry_api.copy_version(
            registry, staging, first, source_env="dev", target_env="staging"
        )
        assert (again.copied, again.version.version) == (False, bare.version)
        registry_api.copy_version(registry, staging, first, source_env="dev", target_env="staging")
        assert [(r.kind, r.body) for r in staging.reports(bare)] == [("evaluation", {"a": 1})]
