"""hypothesis: window index arithmetic, config overrides, checkpoint JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lstmcli.config import apply_overrides
from lstmcli.data.dataset import SPLITS, Split
from lstmcli.data.windows import Windows
from lstmcli.errors import ConfigError
from lstmcli.runs.checkpoints import from_json_safe, to_json_safe

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def splits(draw: st.DrawFn) -> Split:
    n = draw(st.integers(1, 400))
    lookback = draw(st.integers(1, 60))
    horizon = draw(st.integers(1, 30))
    train = draw(st.floats(0.05, 0.85))
    val = draw(st.floats(0.05, 0.95 - train))
    train_end = math.floor(train * n)
    val_end = math.floor((train + val) * n)
    return Split(n, train_end, val_end, lookback, horizon)


def bounds(s: Split) -> dict[str, tuple[int, int]]:
    return {"train": (0, s.train_end), "val": (s.train_end, s.val_end), "test": (s.val_end, s.n_rows)}


@FAST
@given(splits())
def test_every_window_is_in_exactly_the_split_that_holds_its_targets(s: Split) -> None:
    L, H, N = s.lookback, s.horizon, s.n_rows
    owner: dict[int, str] = {}
    for name in SPLITS:
        origins = s.origins(name)
        assert origins.dtype == np.int64 and np.all(np.diff(origins) == 1)  # stride 1, sorted
        for o in origins.tolist():
            assert o not in owner, f"origin {o} in {owner[o]} and {name}"
            owner[o] = name
    for o in range(L, N - H + 1):  # every window that fits in the series
        homes = [name for name, (lo, hi) in bounds(s).items() if lo <= o and o + H <= hi]
        assert owner.get(o) == (homes[0] if homes else None)
    assert set(owner) <= set(range(L, N - H + 1))


@FAST
@given(splits())
def test_no_target_leaks_across_splits(s: Split) -> None:
    L, H = s.lookback, s.horizon
    b = bounds(s)
    for name in SPLITS:
        lo, hi = b[name]
        for o in s.origins(name).tolist():
            assert lo <= o and o + H <= hi  # every target row inside the split
            assert o - L >= 0  # inputs exist
    # Training windows never see a validation or test row, as input or target.
    train = s.origins("train")
    if train.size:
        assert train.max() + H <= s.train_end
    # Validation windows never see a test row.
    val = s.origins("val")
    if val.size:
        assert val.max() + H <= s.val_end


@FAST
@given(splits(), st.integers(1, 3), st.integers(0, 2))
def test_counts_and_window_shapes(s: Split, k: int, extra: int) -> None:
    L, H = s.lookback, s.horizon
    for name, (lo, hi) in bounds(s).items():
        first = max(L, lo)
        assert s.origins(name).size == max(0, hi - H - first + 1)
    origins = np.concatenate([s.origins(name) for name in SPLITS])
    assume(origins.size > 0)
    n = k + extra
    series = torch.arange(s.n_rows * n, dtype=torch.float32).reshape(s.n_rows, n)
    w = Windows(series, L, H, k)
    idx = torch.as_tensor(origins[:50])
    x, y = w.inputs(idx), w.targets(idx)
    assert x.shape == (len(idx), L, n) and y.shape == (len(idx), H, k)
    for i, o in enumerate(idx.tolist()):
        assert torch.equal(x[i], series[o - L : o]) and torch.equal(y[i], series[o : o + H, :k])


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


json_values = st.recursive(
    st.one_of(st.floats(), st.integers(), st.booleans(), st.none(), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text("abc", max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)


@FAST
@given(json_values)
def test_checkpoint_json_keeps_inf_and_nan_and_stays_strict(value: object) -> None:
    text = json.dumps(to_json_safe(value), allow_nan=False)  # strict JSON or it raises
    back = from_json_safe(json.loads(text))

    def same(a: object, b: object) -> bool:
        if isinstance(a, float) and math.isnan(a):
            return isinstance(b, float) and math.isnan(b)
        if isinstance(a, dict):
            return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        return a == b and type(a) is type(b)

    assert same(value, back)
