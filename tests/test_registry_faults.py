"""The registry under real concurrent processes and kill -9: numbers unique, versions whole."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from mlinfra.registry import NewVersion, Registry, initialize

# Registers versions of a real model in a loop: `python -c SCRIPT ROOT COUNT` (COUNT 0 = forever).
REGISTER_LOOP = """
import sys
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier
from mlinfra.registry import NewVersion, Registry, dump_model

X, y = load_iris(return_X_y=True, as_frame=True)
model = dump_model(DecisionTreeClassifier(max_depth=2).fit(X, y))
registry = Registry.open(sys.argv[1])
count = int(sys.argv[2])
i = 0
while count == 0 or i < count:
    i += 1
    registry.register(NewVersion(
        model="iris", task="classification", env="dev", model_bytes=model,
        params={"i": i}, metrics={"accuracy": 1.0}, lineage={},
        documents={"schema": {"rows": i}, "search": {"trials": list(range(200))}},
        reference_sample=str(i).encode() * 1000, tags={"writer": sys.argv[3]},
    ))
"""


def start_writer(root: Path, count: int, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", REGISTER_LOOP, str(root), str(count), name])


def assert_every_version_whole(root: Path) -> list[int]:
    database = sqlite3.connect(root / "registry.db")
    assert database.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    numbers = [n for (n,) in database.execute("SELECT version FROM versions ORDER BY version")]
    (last,) = database.execute("SELECT last_version FROM models WHERE name = 'iris'").fetchone()
    assert numbers == list(range(1, last + 1))  # no gaps, no duplicates, counter never behind
    kinds = database.execute("SELECT version, count(*) FROM documents GROUP BY version").fetchall()
    assert kinds == [(n, 2) for n in numbers]
    tags = database.execute("SELECT count(*) FROM tags").fetchone()[0]
    assert tags == len(numbers)
    with Registry.open(root) as registry:
        for version in registry.list_versions("iris"):
            registry.load(version)  # artifacts present and verified
            assert registry._artifacts.get(version.reference_sha256)
    return numbers


def test_concurrent_registrations_in_real_processes_get_distinct_numbers(tmp_path: Path) -> None:
    initialize(tmp_path)
    writers = [start_writer(tmp_path, 5, f"w{i}") for i in range(4)]
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0, 0, 0]
    numbers = assert_every_version_whole(tmp_path)
    assert numbers == list(range(1, 21))
    with Registry.open(tmp_path) as registry:
        writers_seen = [v.tags["writer"] for v in registry.list_versions("iris")]
    assert sorted(set(writers_seen)) == ["w0", "w1", "w2", "w3"]


def test_kill_9_while_registering_leaves_no_half_registered_version(tmp_path: Path) -> None:
    initialize(tmp_path)
    rng = random.Random(7)
    total = 0
    for _ in range(3):
        writer = start_writer(tmp_path, 0, "loop")
        deadline = time.monotonic() + 30
        while len(Registry.open(tmp_path).list_versions()) <= total:  # wait until it is registering
            assert time.monotonic() < deadline, "writer never registered"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        total = len(assert_every_version_whole(tmp_path))
    with Registry.open(tmp_path) as registry:
        latest = registry.latest("iris")
        model = registry._artifacts.get(latest.artifact_sha256)
        draft = NewVersion(
            "iris", "classification", "dev", model, params={}, metrics={}, lineage={}
        )
        assert registry.register(draft).version == total + 1  # numbering carries on, none reused
