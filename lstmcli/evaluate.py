"""Forecast every window of a split and score it against naive baselines, in original units."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from lstmcli.data import Dataset
from lstmcli.windows import Windows

METRICS = ("MAE", "RMSE", "sMAPE", "MASE")


@torch.no_grad()
def forecast_scaled(
    model: nn.Module, windows: Windows, origins: np.ndarray, batch_size: int | None = None
) -> np.ndarray:
    """Model forecasts for ``origins`` in scaled units, shape (W, H, k), float64."""
    batch_size = batch_size or windows.eval_chunk()
    was_training = model.training
    model.eval()
    device = windows.series.device
    out = []
    for start in range(0, len(origins), batch_size):
        o = torch.as_tensor(origins[start : start + batch_size], device=device)
        out.append(model(windows.inputs(o)).float().cpu())
    model.train(was_training)
    if not out:
        return np.zeros((0, windows.out_offsets.numel(), windows.n_targets))
    return torch.cat(out).double().numpy()


def actuals(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """values (N, k) original units -> (W, H, k) targets of each window."""
    return values[origins[:, None] + np.arange(horizon)]


def naive(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """Repeat the last observed value y[o-1] for every step."""
    return np.repeat(values[origins - 1][:, None, :], horizon, axis=1)


def seasonal_naive(values: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Step h = 1..H takes y[o - s + ((h - 1) mod s)]: the same point one season earlier."""
    offsets = -season + (np.arange(horizon) % season)  # (H,)
    return values[origins[:, None] + offsets]


def scores(actual: np.ndarray, forecast: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and sMAPE (percent; 0/0 counted as 0), pooled over every value."""
    err = forecast - actual
    denom = np.abs(actual) + np.abs(forecast)
    smape = np.divide(200.0 * np.abs(err), denom, out=np.zeros_like(denom), where=denom > 0)
    return {
        "MAE": float(np.mean(np.abs(err))),
        "RMSE": float(np.sqrt(np.mean(err**2))),
        "sMAPE": float(np.mean(smape)),
    }


def compare(
    actual: np.ndarray, forecasts: dict[str, np.ndarray], reference: str = "seasonal_naive"
) -> dict[str, dict[str, float | None]]:
    """Score each forecast; MASE is its MAE over the reference's MAE on the same windows."""
    table: dict[str, dict[str, float | None]] = {name: dict(scores(actual, f)) for name, f in forecasts.items()}
    ref_mae = table[reference]["MAE"]
    for row in table.values():
        row["MASE"] = (row["MAE"] / ref_mae) if ref_mae else None  # type: ignore[operator]
    return table


def evaluate_split(
    model: nn.Module, windows: Windows, ds: Dataset, name: str, season: int
) -> dict[str, Any]:
    """Metrics of the model and both baselines on every window of split ``name``.

    With several series: pooled over all of them, plus ``per_series`` (each with its own
    baselines, in its own units).
    """
    k, targets = ds.n_targets, ds.table.columns[: ds.n_targets]
    values = ds.table.values[:, :k]  # original units
    parts = []
    for s in ds.series:
        origins = s.origins(name)
        model_f = s.scaler.inverse(forecast_scaled(model, windows, origins), slice(0, k))
        parts.append(forecast_set(values, origins, s.split.horizon, season, model_f))
    result = summarize_pooled(parts, targets)
    if len(ds.series) > 1:
        result["per_series"] = {s.id: summarize(a, f, targets) for s, (a, f) in zip(ds.series, parts, strict=True)}
    return result


def forecast_set(
    values: np.ndarray, origins: np.ndarray, horizon: int, season: int, model_forecast: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Actuals (W, H, k) and the model's and both baselines' forecasts for ``origins``."""
    return actuals(values, origins, horizon), {
        "model": model_forecast,
        "naive": naive(values, origins, horizon),
        "seasonal_naive": seasonal_naive(values, origins, horizon, season),
    }


def summarize(actual: np.ndarray, forecasts: dict[str, np.ndarray], targets: list[str]) -> dict[str, Any]:
    """Metrics pooled over every value, plus ``per_target`` when there are several targets."""
    result: dict[str, Any] = compare(actual, forecasts)
    if len(targets) > 1:
        result["per_target"] = {
            t: compare(actual[..., j], {n: f[..., j] for n, f in forecasts.items()}) for j, t in enumerate(targets)
        }
    return result


def summarize_pooled(parts: list[tuple[np.ndarray, dict[str, np.ndarray]]], targets: list[str]) -> dict[str, Any]:
    """``summarize`` over several series' (actual, forecasts) sets, their windows pooled."""
    actual = np.concatenate([a for a, _ in parts])
    pooled = {key: np.concatenate([f[key] for _, f in parts]) for key in parts[0][1]}
    return summarize(actual, pooled, targets)


def evaluate_forecasts(
    values: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    season: int,
    model_forecast: np.ndarray,
    targets: list[str],
) -> dict[str, Any]:
    """Pooled and per-target metrics for a model forecast (W, H, k) and both baselines."""
    actual, forecasts = forecast_set(values, origins, horizon, season, model_forecast)
    return summarize(actual, forecasts, targets)
