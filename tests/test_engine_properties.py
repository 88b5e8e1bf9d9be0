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


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6)
_SCALARS = (
    st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


def _identical(declared: object, received: object) -> bool:
    """Equal, and of the same types all the way down: 3 is not 3.0, -0.0 is not 0.0."""
    if type(declared) is not type(received):
        return False
    if isinstance(declared, dict):
        assert isinstance(received, dict)
        return declared.keys() == received.keys() and all(
            _identical(declared[key], received[key]) for key in declared
        )
    if isinstance(declared, list):
        assert isinstance(received, list)
        return len(declared) == len(received) and all(map(_identical, declared, received))
    if isinstance(declared, float):
        return str(declared) == str(received)
    return declared == received


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=_VALUES)
def test_what_the_program_declares_is_what_state_and_provider_receive(journal_project, value):
    """The SDK sends numbers as protobuf doubles; the engine keeps ints as ints (and floats as
    floats) on the way to the state and the provider."""
    received = journal_project.root / "received.jsonl"
    received.unlink(missing_ok=True)
    engine = journal_project.engine()
    engine.destroy()
    os.environ["SPEC"] = json.dumps({"r0": {"content": "a", "deps": [], "value": value}})
    os.environ["RECEIVED"] = str(received)
    try:
        engine.up()
    finally:
        del os.environ["SPEC"], os.environ["RECEIVED"]
    (state,) = engine.resources()
    assert _identical(value, state.inputs["token"])
    (call,) = [json.loads(line) for line in received.read_text().splitlines()]
    assert call["op"] == "create" and _identical(value, call["props"]["token"])
