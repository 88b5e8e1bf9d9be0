"""Property tests: whatever sequence of programs is applied, the state and the real files match
the last program, and a preview right after an up plans nothing."""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NAMES = [f"r{i}" for i in range(6)]


@st.composite
def programs(draw: st.DrawFn) -> dict[str, dict[str, object]]:
    chosen = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
    spec: dict[str, dict[str, object]] = {}
    for name in chosen:
        deps = draw(st.lists(st.sampled_from(list(spec)), unique=True)) if spec else []
        spec[name] = {"content": draw(st.sampled_from(["a", "b", "c"])), "deps": deps}
    return spec


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=st.lists(programs(), min_size=1, max_size=4))
def test_any_sequence_of_programs_converges(journal_project, sequence):
    engine = journal_project.engine()
    engine.destroy()
    for spec in sequence:
        os.environ["SPEC"] = json.dumps(spec)
        try:
            engine.up()
            state = {r.name: r for r in engine.resources()}
            assert sorted(state) == sorted(spec)
            files = {p.stem: p.read_text() for p in journal_project.out.iterdir()}
            assert files == {name: item["content"] for name, item in spec.items()}
            for name, item in spec.items():
                assert sorted(state[name].dependencies) == sorted(
                    state[d].urn for d in item["deps"]
                )
            assert not engine.preview().changed
        finally:
            del os.environ["SPEC"]
