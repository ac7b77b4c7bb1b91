"""Windows as index gathers over one series tensor kept on the training device."""

from __future__ import annotations

import torch


class Windows:
    """Gather (x, y) batches for window origins without ever materialising all windows.

    An origin o has inputs rows [o - L, o) (all n columns) and targets rows [o, o + H) (the first
    k columns). With known-future columns, its inputs go on to row o + H - 1 and the last H rows
    hold those columns' values alone (every other column zero: the future targets never reach the
    model). Memory is the series itself plus one batch, whatever L is.
    """

    def __init__(
        self,
        series: torch.Tensor,
        lookback: int,
        horizon: int,
        n_targets: int,
        starts: torch.Tensor | None = None,
        future: list[int] | None = None,
    ) -> None:
        """``starts`` (N,), the first row of each row's series, pads windows that reach before it
        with that row (series too short for a full lookback); None when no window does.
        ``future``: the columns whose values are known for the horizon (``data.future_columns``)."""
        self.series = series  # (N, n) on the training device
        self.n_targets = n_targets
        self.lookback = lookback
        self.out_offsets = torch.arange(horizon, device=series.device)  # (H,)
        ahead = horizon if future else 0
        self.in_offsets = torch.arange(-lookback, ahead, device=series.device)  # (L,) or (L + H,)
        self.future_mask: torch.Tensor | None = None  # (L + H, n): 1 for the past, the future columns' future
        if future:
            mask = torch.ones(lookback + horizon, series.shape[1], device=series.device, dtype=series.dtype)
            mask[lookback:] = 0
            mask[lookback:, future] = 1
            self.future_mask = mask
        self.starts = starts

    @property
    def values_per_window(self) -> int:
        """H * k: the target values one window's loss sums over."""
        return self.out_offsets.numel() * self.n_targets

    def inputs(self, origins: torch.Tensor) -> torch.Tensor:
        """(B,) origins -> (B, L, n) inputs, or (B, L + H, n) with known-future columns."""
        rows = origins[:, None] + self.in_offsets  # (B, L)
        if self.starts is not None:  # repeat a short series' first row instead of reading the series before it
            rows = torch.maximum(rows, self.starts[origins][:, None])
        x = self.series[rows]
        return x if self.future_mask is None else x * self.future_mask

    def targets(self, origins: torch.Tensor) -> torch.Tensor:
        """(B,) origins -> (B, H, k) targets."""
        return self.series[origins[:, None] + self.out_offsets, : self.n_targets]

    def eval_chunk(self, step_budget: int = 1 << 16) -> int:
        """Windows per no-grad forward: 4096 up to L = 16, fewer beyond, so that the activations
        of an evaluation chunk (B x L x m per layer) stay the same size whatever L is."""
        return max(1, min(4096, step_budget // self.in_offsets.numel()))
