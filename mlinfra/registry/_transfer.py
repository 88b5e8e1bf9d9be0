"""Copying a version from one registry into another, as promotion between envs and moving an env
onto a shared registry both need: every byte verified, nothing of the version left behind, and a
link back to where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._registry import Registry
from ._types import ModelVersion, NewVersion

__all__ = ["Transfer", "copy_version", "same_registry"]


@dataclass(frozen=True)
class Transfer:
    """Where a version landed; `copied` is False when the target already held it (a shared
    registry, or an earlier copy of this version)."""

    version: ModelVersion
    copied: bool


def same_registry(first: Registry, second: Registry) -> bool:
    return Path(first.root).resolve() == Path(second.root).resolve()


def copy_version(
    source: Registry,
    target: Registry,
    version: ModelVersion,
    *,
    source_env: str,
    target_env: str,
    actor: str | None = None,
) -> Transfer:
    """Copy `version` with its artifact (sha256 verified), reference sample, documents (schema,
    importances, validation, search), metrics, params, tags and reports into `target`, numbered
    there as the next version; its lineage gains `origin` (registry, env, version, artifact).

    Idempotent: a version the target already holds a copy of is not copied twice.
    """
    if same_registry(source, target):
        return Transfer(version=version, copied=False)
    earlier = _earlier_copy(target, source, version)
    if earlier is not None:
        _copy_reports(source, target, version, earlier)  # a copy cut off before its reports
        return Transfer(version=earlier, copied=False)
    model_bytes = source.artifact(version)  # refused if missing or tampered
    origin: dict[str, Any] = {
        "registry": str(Path(source.root).resolve()),
        "env": source_env,
        "version": version.version,
        "artifact_sha256": version.artifact_sha256,
    }
    if "origin" in version.lineage:
        origin["origin"] = version.lineage["origin"]
    copied = target.register(
        NewVersion(
            model=version.model,
            task=version.task,
            env=target_env,
            model_bytes=model_bytes,
            params=version.params,
            metrics=version.metrics,
            lineage={**version.lineage, "origin": origin},
            documents=source.documents(version),
            reference_sample=source.reference_bytes(version),
            trusted_types=version.trusted_types,
            tags=version.tags,
            created_by=actor,
        )
    )
    _copy_reports(source, target, version, copied)
    return Transfer(version=copied, copied=True)


def _copy_reports(
    source: Registry, target: Registry, version: ModelVersion, copy: ModelVersion
) -> None:
    """Give `copy` every report of `version` it lacks: registering the copy and adding its
    reports are separate transactions, so a crash between them is finished by the next copy."""
    held = [(r.env, r.kind, r.created_by, r.body) for r in target.reports(copy)]
    for report in source.reports(version):
        if (report.env, report.kind, report.created_by, report.body) in held:
            continue
        target.add_report(
            copy,
            env=report.env,
            kind=report.kind,
            passed=report.passed,
            body=report.body,
            markdown=report.markdown,
            created_by=report.created_by,
        )


def _earlier_copy(target: Registry, source: Registry, version: ModelVersion) -> ModelVersion | None:
    """The target's copy of this very version, made before; versions that merely hold the same
    bytes are other versions (their lineage differs) and are copied in their own right."""
    root = str(Path(source.root).resolve())
    for candidate in target.find_by_artifact(version.model, version.artifact_sha256):
        origin = candidate.lineage.get("origin") or {}
        if origin.get("registry") == root and origin.get("version") == version.version:
            return candidate
    return None
