"""Windows as index gathers over one series tensor kept on the training device."""

from __future__ import annotations

import torch


class Windows:
    """Gather (x, y) batches for window origins without ever materialising all windows.

    An origin o has inputs rows [o - L, o) (all n columns) and targets rows [o, o + H) (the first
    k columns). Memory is the series itself plus one batch, whatever L is.
    """

    def __init__(
        self, series: torch.Tensor, lookback: int, horizon: int, n_targets: int, starts: torch.Tensor | None = None
    ) -> None:
        """``starts`` (N,), the first row of each row's series, pads windows that reach before it
        with that row (series too short for a full lookback); None when no window does."""
        self.series = series  # (N, n) on the training device
        self.n_targets = n_targets
        self.in_offsets = torch.arange(-lookback, 0, device=series.device)  # (L,)
        self.out_offsets = torch.arange(horizon, device=series.device)  # (H,)
        self.starts = starts

    @property
    def values_per_window(self) -> int:
        """H * k: the target values one window's loss sums over."""
        return self.out_offsets.numel() * self.n_targets

    def inputs(self, origins: torch.Tensor) -> torch.Tensor:
        """(B,) origins -> (B, L, n) inputs."""
        rows = origins[:, None] + self.in_offsets  # (B, L)
        if self.starts is not None:  # repeat a short series' first row instead of reading the series before it
            rows = torch.maximum(rows, self.starts[origins][:, None])
        return self.series[rows]

    def targets(self, origins: torch.Tensor) -> torch.Tensor:
        """(B,) origins -> (B, H, k) targets."""
        return self.series[origins[:, None] + self.out_offsets, : self.n_targets]

    def eval_chunk(self, step_budget: int = 1 << 16) -> int:
        """Windows per no-grad forward: 4096 up to L = 16, fewer beyond, so that the activations
        of an evaluation chunk (B x L x m per layer) stay the same size whatever L is."""
        return max(1, min(4096, step_budget // self.in_offsets.numel()))
