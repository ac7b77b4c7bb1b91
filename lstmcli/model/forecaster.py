"""The stacked LSTM forecaster: fused ``nn.LSTM`` plus a linear head. No I/O, no printing."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from lstmcli.config import Config

SCALE_FLOOR = 0.1  # in units of the series' training standard deviation


class Member(nn.Module):
    """One more member of an ensemble (``train.ensemble``): its own LSTM and head weights."""

    def __init__(self, lstm: nn.LSTM, head: nn.Linear) -> None:
        super().__init__()
        self.lstm, self.head = lstm, head


class LSTMForecaster(nn.Module):
    """Map a window of L input steps (B, L, n) to H forecast steps of k targets (B, H, k).

    The targets are the first ``k`` input columns. With ``normalize`` set, each window's level
    (its last or mean value per target) is subtracted from the target inputs and added back to
    the forecast, so the LSTM sees shapes rather than absolute levels; this is what lets it
    forecast trending series beyond the range of the training rows. With ``season``, the target
    inputs are taken relative to the last value and the network's output is added to the seasonal
    naive forecast read from the window itself (step h: the value one season before): it learns
    the correction to last season, so an untrained network already forecasts like the baseline.

    With ``quantiles`` (a quantile run), the head gives Q outputs per step and target. The median
    is one of them; each quantile above it is the one below plus a softplus (positive) step, and
    each below it the one above minus one, so the quantiles never cross, and no later map (the
    window's scale, the scaler, exp of a log transform, all increasing) can make them.
    ``forward(x)`` returns the median, the point forecast; ``forward(x, quantiles=True)`` all Q,
    (B, H, k, Q) (Q = 1, the point forecast, for a point model).

    With ``members`` K > 1 (an ensemble) there are K sets of LSTM and head weights, initialised one
    after the other from the one seed (the first as a single model's); they read the same
    normalised window, and the forecast is the mean of theirs (each member's quantiles are ordered,
    so their mean is too). ``forward(x, members=True)`` gives each member's, (K, ...): training
    minimises the sum of the members' losses, so each learns as it would alone. ``lstm`` and
    ``head`` are the first member's, the one ``lstm inspect`` shows gate by gate.
    """

    def __init__(
        self,
        n: int,
        m: int,
        layers: int,
        horizon: int,
        n_targets: int,
        dropout: float = 0.0,
        normalize: str = "last",
        season: int = 1,
        lookback: int | None = None,
        window_scale: bool = False,
        quantiles: list[float] | None = None,
        future: list[int] | None = None,
        lag_targets: list[int] | None = None,
        members: int = 1,
        drift: bool = False,
    ) -> None:
        super().__init__()
        if not 1 <= n_targets <= n:
            raise ValueError(f"n_targets must be in 1..n={n}, got {n_targets}")
        self.n, self.m, self.layers = n, m, layers
        self.horizon, self.n_targets, self.normalize = horizon, n_targets, normalize
        self.window_scale = window_scale and normalize != "none"
        self.quantiles: tuple[float, ...] = tuple(quantiles or ())
        if self.quantiles and 0.5 not in self.quantiles:
            raise ValueError(f"quantiles must include 0.5 (the point forecast), got {list(self.quantiles)}")
        self.median = self.quantiles.index(0.5) if self.quantiles else 0
        self.outputs = len(self.quantiles) or 1
        # Known-future columns: the input holds H more rows, their values alone (data.Windows).
        self.future: tuple[int, ...] = tuple(future or ())
        if self.future and lookback is None:
            raise ValueError("a model with future columns needs its lookback")
        self.past = lookback if self.future else None  # the rows the LSTM reads: all of them without
        self.future_index: torch.Tensor
        self.register_buffer("future_index", torch.tensor(self.future, dtype=torch.long), persistent=False)
        # Lagged targets (data.lags): the last len(lag_targets) columns, each a target shifted by its
        # lag and known for the horizon; normalised like the target it lags, with its level and scale.
        self.lag_targets: tuple[int, ...] = tuple(lag_targets or ())
        if self.lag_targets and len(self.future) < len(self.lag_targets):
            raise ValueError("the lag columns are known-future columns: list them in future too")
        self.lag_index: torch.Tensor
        self.register_buffer("lag_index", torch.tensor(self.lag_targets, dtype=torch.long), persistent=False)
        # normalize "season": row L - s + (h mod s) of the window is the seasonal naive forecast of
        # step h; without a season that fits the lookback it is the last row, as "last".
        seasonal = normalize == "season" and season > 1 and lookback is not None and lookback >= season
        self.seasonal_base = seasonal  # False for "season" too when the season does not fit the lookback
        rows = [lookback - season + (h % season) for h in range(horizon)] if seasonal and lookback else [-1] * horizon
        self.base_rows: torch.Tensor
        self.register_buffer("base_rows", torch.tensor(rows, dtype=torch.long), persistent=False)
        # drift: the base continues the window's trend, its mean change over a season (over a step
        # for s = 1) per step, times the steps from the base row to the forecast step. A window no
        # longer than the season has no whole season's change to read: it would read the pattern.
        if drift and normalize not in ("last", "season"):
            raise ValueError(f"drift needs normalize 'last' or 'season', got {normalize!r}")
        if drift and lookback is not None and lookback <= season:
            raise ValueError(f"drift needs a lookback longer than the season {season}, got {lookback}")
        self.drift, self.drift_lag = drift, season
        # Steps from step h's base row to step h: s·(h // s + 1) from a season before, h + 1 from the last row.
        gaps = [season * (h // season + 1) if seasonal else h + 1 for h in range(horizon)]
        self.drift_steps: torch.Tensor
        self.register_buffer(
            "drift_steps", torch.tensor(gaps, dtype=torch.float32).view(1, horizon, 1), persistent=False
        )
        if members < 1:
            raise ValueError(f"members must be at least 1, got {members}")
        self.lstm, self.head = self._member(dropout)
        self.others = nn.ModuleList([Member(*self._member(dropout)) for _ in range(members - 1)])

    def _member(self, dropout: float) -> tuple[nn.LSTM, nn.Linear]:
        """One member's LSTM and head, freshly initialised."""
        n, m, k, H = self.n, self.m, self.n_targets, self.horizon
        # The textbook's n, m, layers become torch's names here and nowhere else.
        lstm = nn.LSTM(
            input_size=n,
            hidden_size=m,
            num_layers=self.layers,
            batch_first=True,
            dropout=dropout if self.layers > 1 else 0.0,
        )
        # The head reads the last y_t and, with known-future columns, their H values: a linear
        # effect of each known future value on each forecast step (BENCHMARKS.md measures it).
        head = nn.Linear(m + H * len(self.future), H * k * self.outputs)
        with torch.no_grad():  # a known future value has no effect until training gives it one: a column
            head.weight[:, m:] = 0.0  # constant in the training rows (a law not yet in force) never gets one
            if self.lag_targets:
                self._start_from_the_lags(head)
        return lstm, head

    @property
    def members(self) -> int:
        return 1 + len(self.others)

    def cores(self) -> list[tuple[nn.LSTM, nn.Linear]]:
        """Every member's LSTM and head, the first member's first."""
        others = [cast(Member, o) for o in self.others]  # a ModuleList's items are typed Module
        return [(self.lstm, self.head), *((o.lstm, o.head) for o in others)]

    def member_parameters(self) -> list[list[nn.Parameter]]:
        """Each member's parameters (gradient clipping is per member, as for a model alone)."""
        return [[*lstm.parameters(), *head.parameters()] for lstm, head in self.cores()]

    def _start_from_the_lags(self, head: nn.Linear) -> None:
        """Head weights that make step h's forecast its lag columns' value at step h (their mean, for
        several lags of a target): the untrained model forecasts like seasonal naive with the lag,
        which training then corrects, as normalize: season does for s."""
        f, nl, k, Q = len(self.future), len(self.lag_targets), self.n_targets, self.outputs
        for h in range(self.horizon):
            for i, j in enumerate(self.lag_targets):
                row = (h * k + j) * Q + self.median  # the median output of step h, target j
                head.weight[row, self.m + h * f + f - nl + i] = 1.0 / self.lag_targets.count(j)

    @classmethod
    def from_config(cls, cfg: Config) -> LSTMForecaster:
        return cls(
            n=cfg.model.n,
            m=cfg.model.m,
            layers=cfg.model.layers,
            horizon=cfg.data.horizon,
            n_targets=len(cfg.data.target),
            dropout=cfg.model.dropout,
            normalize=cfg.model.normalize,
            season=cfg.data.s,
            lookback=cfg.data.lookback,
            window_scale=cfg.model.window_scale,
            quantiles=cfg.model.quantiles,
            future=cfg.data.future_columns,
            lag_targets=cfg.data.lag_targets,
            members=cfg.train.ensemble,
            drift=cfg.model.drift,
        )

    def level(self, x: torch.Tensor) -> torch.Tensor:
        """Per-window level of the targets, shape (B, 1, k); zeros when normalize is 'none'."""
        targets = x[:, : self.past, : self.n_targets]  # (B, L, k)
        if self.normalize in ("last", "season"):
            return targets[:, -1:, :]
        if self.normalize == "mean":
            return targets.mean(dim=1, keepdim=True)
        return torch.zeros_like(targets[:, -1:, :])

    def base(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """What the network's output is added to: the level (B, 1, k), or (B, H, k) with normalize
        season (the seasonal naive forecast read from the window) or drift (plus the window's trend)."""
        targets = x[:, : self.past, : self.n_targets]
        base = targets[:, self.base_rows] if self.normalize == "season" else level
        if not self.drift:
            return base
        d = self.drift_lag  # the window's mean change over d steps, per step
        slope = (targets[:, d:].mean(dim=1, keepdim=True) - targets[:, :-d].mean(dim=1, keepdim=True)) / d
        return base + slope * self.drift_steps  # (B, H, k)

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """Per-window scale of the targets, (B, 1, k): the mean absolute step of the window's target
        inputs (a tenth of the series' training standard deviation at least), or ones without
        ``window_scale`` or a second row. Training divides its errors by it too, so every window weighs alike."""
        targets = x[:, : self.past, : self.n_targets]
        if not self.window_scale or targets.shape[1] < 2:  # a one-row window has no step to measure
            return torch.ones_like(targets[:, -1:, :])
        steps = (targets[:, 1:, :] - targets[:, :-1, :]).abs().mean(dim=1, keepdim=True)
        return steps.clamp_min(SCALE_FLOOR)

    def lstm_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the LSTM reads of a window x (B, L, n), or (B, L + H, n) with known-future
        columns: its first L rows, the targets relative to the window's level and scale."""
        x = x[:, : self.past]
        return self._normalized(x, self.level(x), self.scale(x))  # (B, L, n)

    def _normalized(self, x: torch.Tensor, level: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        if self.normalize == "none":
            return x
        k, nl = self.n_targets, len(self.lag_targets)
        parts = [(x[:, :, :k] - level) / scale, x[:, :, k : x.shape[2] - nl]]
        if nl:
            parts.append(self._as_targets(x[:, :, -nl:], level, scale))
        return torch.cat(parts, dim=2)

    def _as_targets(self, lagged: torch.Tensor, level: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Lag columns (B, T, nl) relative to ``level`` (B, 1 or T, k) and in the scale of the target
        each lags: the units of the head's output, so that a weight of 1 forecasts the lag."""
        return (lagged - level.index_select(2, self.lag_index)) / scale.index_select(2, self.lag_index)

    def forward(self, x: torch.Tensor, quantiles: bool = False, members: bool = False) -> torch.Tensor:
        # x: (B, L, n) scaled inputs, targets in the first k columns; with known-future columns
        # (B, L + H, n), the last H rows holding those columns' values
        ahead = None
        if self.past is not None:  # known-future columns
            L = self.past
            known = x.index_select(2, self.future_index)  # (B, L + H, f)
            x = x[:, :L]
        level = self.level(x)  # (B, 1, k)
        scale = self.scale(x)  # (B, 1, k)
        base = self.base(x, level)  # (B, 1, k), or (B, H, k)
        if self.past is not None:
            ahead = known[:, L:]  # (B, H, f)
            if self.normalize != "none":  # relative to the last observed value, as the forecast is to the level
                ahead = ahead - known[:, L - 1 : L]
                if self.lag_targets:  # the lag columns (the last ones) as the forecast: relative to its base
                    nl = len(self.lag_targets)
                    lagged = self._as_targets(known[:, L:, -nl:], base, scale)
                    ahead = torch.cat([ahead[:, :, :-nl], lagged], dim=2)
            ahead = ahead.flatten(1)  # (B, H*f)
        z = self._normalized(x, level, scale)
        outs = []
        for lstm, head in self.cores():
            y, _ = lstm(z)  # y: (B, L, m), every y_t of the last layer
            last = y[:, -1, :] if ahead is None else torch.cat([y[:, -1, :], ahead], dim=1)
            outs.append(self._forecast(head(last), scale, base, quantiles))  # from the last y_t (and the known future)
        if members:
            return torch.stack(outs)  # (K, ...)
        return outs[0] if len(outs) == 1 else torch.stack(outs).mean(dim=0)

    def _forecast(self, out: torch.Tensor, scale: torch.Tensor, base: torch.Tensor, quantiles: bool) -> torch.Tensor:
        """A head's output (B, H*k*Q) as the forecast: (B, H, k), or (B, H, k, Q) with ``quantiles``."""
        k = self.n_targets
        if not self.quantiles:
            point = out.view(-1, self.horizon, k) * scale + base  # (B, H, k)
            return point.unsqueeze(-1) if quantiles else point
        q = self._ordered(out.view(-1, self.horizon, k, self.outputs))
        q = q * scale.unsqueeze(-1) + base.unsqueeze(-1)  # (B, H, k, Q)
        return q if quantiles else q[..., self.median]  # the median: the same bits either way

    def _ordered(self, raw: torch.Tensor) -> torch.Tensor:
        """(..., Q) raw outputs -> increasing quantiles: the median's output, then cumulative
        softplus steps up from it and down from it."""
        j = self.median
        mid = raw[..., j : j + 1]
        up = mid + torch.cumsum(nn.functional.softplus(raw[..., j + 1 :]), dim=-1)
        down = mid - torch.cumsum(nn.functional.softplus(raw[..., :j].flip(-1)), dim=-1).flip(-1)
        return torch.cat([down, mid, up], dim=-1)
