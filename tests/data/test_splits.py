"""Chronological splits: the floor rule, and (hypothesis) every window in exactly the split of its targets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lstmcli.config import load_config
from lstmcli.data.dataset import SPLITS, Split, make_split
from lstmcli.data.windows import Windows
from lstmcli.errors import DataError
from tests.conftest import write_config


def test_split_rows_are_exact_floors(tiny_config: Path) -> None:
    from lstmcli.config import load_config
    from lstmcli.data.dataset import split_rows

    cfg = load_config(tiny_config).data
    split = split_rows(90, cfg)
    assert (split.train_end, split.val_end) == (63, 76)  # 0.7 * 90 is 62.999... in floats


def test_split_boundaries_follow_the_floor_rule(tiny_config: Path) -> None:
    cfg = load_config(tiny_config)  # 80 rows, L 12, H 3
    split = make_split(80, cfg.data)
    assert (split.train_end, split.val_end) == (56, 68)  # floor(0.70*80), floor(0.85*80)
    train, val, test = split.origins("train"), split.origins("val"), split.origins("test")
    assert (train[0], train[-1]) == (12, 53)  # inputs from row 0; last targets end at row 55
    assert (val[0], val[-1]) == (56, 65)
    assert (test[0], test[-1]) == (68, 77)


def test_series_too_short_names_the_sizes(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"lookback": 60}))
    with pytest.raises(DataError, match=r"series too short: 80 rows give the train split 56 row\(s\)"):
        make_split(80, cfg.data, "x.csv")


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
