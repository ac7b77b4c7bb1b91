"""Scaling from training rows only, the log transform, values near the limits of float64."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lstmcli.config import load_config
from lstmcli.data.dataset import load_dataset


def test_scaler_sees_only_training_rows(tmp_path: Path, tiny_config: Path) -> None:
    csv = tmp_path / "series.csv"
    text = csv.read_text().splitlines()
    # poison the last (test) row with a huge value: the scaler must not move
    text[-1] = text[-1].rsplit(",", 1)[0] + ",1000000"
    csv.write_text("\n".join(text) + "\n")
    cfg = load_config(tiny_config)
    ds = load_dataset(cfg.data)
    train = ds.table.values[: ds.split.train_end, 0]
    assert ds.scaler.mean[0] == pytest.approx(train.mean())
    assert ds.scaler.std[0] == pytest.approx(train.std())
    assert abs(ds.scaled[: ds.split.train_end, 0].mean()) < 1e-5


def test_log_transform_round_trips(tiny_config: Path) -> None:
    cfg = load_config(tiny_config, ["data.transform=log"])
    ds = load_dataset(cfg.data)
    back = ds.scaler.inverse(ds.scaled.astype(np.float64), slice(0, 1))
    assert np.allclose(back, ds.table.values, rtol=1e-5)
    assert ds.scaler.log[0]


def test_values_near_1e_300_are_standardised_not_taken_for_a_constant(tmp_path: Path) -> None:
    from lstmcli.data.dataset import _column_stats

    x = np.array([1.0, 2.0, 3.0, 4.0]) * 1e-300
    mean, std = _column_stats(x, log=False)
    assert std == pytest.approx(np.std([1.0, 2.0, 3.0, 4.0]) * 1e-300, rel=1e-9)
