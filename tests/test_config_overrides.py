"""hypothesis: a --set override changes one key and leaves the rest; malformed ones are config errors."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lstmcli.config import apply_overrides
from lstmcli.errors import ConfigError

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


keys = st.text("abcdefgh_", min_size=1, max_size=6)
scalars = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.booleans(),
    st.none(),
    st.text("abcxyz ", min_size=1, max_size=8).filter(lambda t: t.strip() == t),
)
configs = st.recursive(scalars, lambda inner: st.dictionaries(keys, inner, max_size=4), max_leaves=12).filter(
    lambda x: isinstance(x, dict)
)


def get(node: dict, path: list[str]) -> object:
    for part in path:
        node = node[part]
    return node


@FAST
@given(configs, st.lists(keys, min_size=1, max_size=3), scalars)
def test_override_sets_one_key_and_leaves_the_rest(raw: dict, path: list[str], value: object) -> None:
    # Only paths that do not run through a scalar can be set.
    node: object = raw
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node:
            break
        node = node[part]
    assume(isinstance(node, dict))
    before = json.dumps(raw, sort_keys=True)
    text = yaml.safe_dump(value).removesuffix("\n...\n").strip()
    out = apply_overrides(raw, [f"{'.'.join(path)}={text}"])
    assert json.dumps(raw, sort_keys=True) == before  # the input is never mutated
    got = get(out, path)
    assert got == value
    # Every other leaf is unchanged.
    out_copy = json.loads(json.dumps(out))
    raw_copy = json.loads(json.dumps(raw))
    parent_out, parent_raw = out_copy, raw_copy
    for part in path[:-1]:
        parent_out = parent_out[part]
        parent_raw = parent_raw.setdefault(part, {}) if isinstance(parent_raw, dict) else {}
    parent_out.pop(path[-1])
    if isinstance(parent_raw, dict):
        parent_raw.pop(path[-1], None)
    assert out_copy == raw_copy


@FAST
@given(configs, st.lists(keys, min_size=1, max_size=3), st.integers(), st.integers())
def test_the_last_override_of_a_key_wins(raw: dict, path: list[str], a: int, b: int) -> None:
    key = ".".join(path)
    try:
        out = apply_overrides(raw, [f"{key}={a}", f"{key}={b}"])
    except ConfigError as exc:
        assert "is a value, not a section" in str(exc)
        return
    assert get(out, path) == b


@FAST
@given(st.sampled_from(["", "=1", "a", "a.=1", ".a=1", "a..b=1", " =2"]))
def test_malformed_overrides_are_config_errors(item: str) -> None:
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        apply_overrides({}, [item])
