"""The floor: a bare, minimal, correct PyTorch training loop for the model ``lstm train`` builds.

Pre-scaled series tensor (train-fitted mean/std, optional log), windows by index gather, nn.LSTM
+ Linear head on the last y_t, Adam, MSE, a validation pass per epoch, test MAE at the end. No
DataLoader, no Dataset, no window-relative normalisation, no gradient clipping, no checkpoint.

    python benchmarks/reference.py --csv data/co2_weekly.csv --columns co2 --lookback 48 \
        --horizon 24 --m 64 --layers 2 --batch 64 --epochs 20 --threads 2

``run.py`` also imports :class:`Reference` to time single epochs in-process next to the tool.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, n: int, m: int, layers: int, horizon: int, k: int) -> None:
        super().__init__()
        self.horizon, self.k = horizon, k
        self.lstm = nn.LSTM(n, m, layers, batch_first=True)
        self.head = nn.Linear(m, horizon * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)  # (B, L, m)
        return self.head(y[:, -1]).view(-1, self.horizon, self.k)  # (B, H, k)


class Reference:
    """Everything the loop needs, built from a (N, n) float32 scaled series."""

    def __init__(
        self,
        scaled: np.ndarray,
        train_end: int,
        val_end: int,
        lookback: int,
        horizon: int,
        k: int = 1,
        m: int = 64,
        layers: int = 2,
        batch: int = 64,
        lr: float = 3e-3,
        seed: int = 0,
    ) -> None:
        torch.manual_seed(seed)
        self.series = torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32))  # (N, n)
        n_rows = len(scaled)
        self.L, self.H, self.k, self.batch = lookback, horizon, k, batch
        self.train = torch.arange(lookback, train_end - horizon + 1)
        self.val = torch.arange(max(lookback, train_end), val_end - horizon + 1)
        self.test = torch.arange(max(lookback, val_end), n_rows - horizon + 1)
        self.x_off = torch.arange(-lookback, 0)
        self.y_off = torch.arange(horizon)
        self.net = Net(scaled.shape[1], m, layers, horizon, k)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.gen = torch.Generator().manual_seed(seed)

    def batch_xy(self, origins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.series[origins[:, None] + self.x_off]  # (B, L, n)
        y = self.series[origins[:, None] + self.y_off, : self.k]  # (B, H, k)
        return x, y

    def train_epoch(self, max_batches: int | None = None) -> float:
        self.net.train()
        order = self.train[torch.randperm(len(self.train), generator=self.gen)]
        if max_batches is not None:
            order = order[: max_batches * self.batch]
        total = torch.zeros(())
        for start in range(0, len(order), self.batch):
            x, y = self.batch_xy(order[start : start + self.batch])
            loss = nn.functional.mse_loss(self.net(x), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += loss.detach() * len(x)
        return float(total) / len(order)

    @torch.no_grad()
    def mse(self, origins: torch.Tensor, chunk: int = 4096) -> float:
        self.net.eval()
        total = 0.0
        for start in range(0, len(origins), chunk):
            x, y = self.batch_xy(origins[start : start + chunk])
            total += float(nn.functional.mse_loss(self.net(x), y, reduction="sum"))
        return total / (len(origins) * self.H * self.k)

    @torch.no_grad()
    def forecast(self, origins: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        self.net.eval()
        return torch.cat([self.net(self.batch_xy(origins[s : s + chunk])[0]) for s in range(0, len(origins), chunk)])


def load_scaled(csv: str, columns: list[str], train_frac: float, val_frac: float, log: bool) -> tuple:
    """np.loadtxt the columns, fit mean/std on the training rows, return (scaled, raw, ends, stats)."""
    with open(csv, encoding="utf-8-sig") as f:
        header = f.readline().strip().split(",")
    raw = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=[header.index(c) for c in columns], ndmin=2)
    n_rows = len(raw)
    train_end, val_end = int(train_frac * n_rows), int((train_frac + val_frac) * n_rows)
    v = raw.copy()
    if log:
        v[:, 0] = np.log(v[:, 0])
    mean, std = v[:train_end].mean(0), v[:train_end].std(0)
    std[std == 0] = 1.0
    return ((v - mean) / std).astype(np.float32), raw, train_end, val_end, mean, std


def main() -> None:
    ap = argparse.ArgumentParser(description="bare PyTorch LSTM training loop (benchmark floor)")
    ap.add_argument("--csv", required=True)
    ap.add_argument("--columns", required=True, help="comma-separated; the first is the target")
    ap.add_argument("--lookback", type=int, required=True)
    ap.add_argument("--horizon", type=int, required=True)
    ap.add_argument("--m", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--log", action="store_true", help="model log(target), as data.transform: log")
    ap.add_argument("--train", type=float, default=0.70)
    ap.add_argument("--val", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    scaled, raw, train_end, val_end, mean, std = load_scaled(
        args.csv, args.columns.split(","), args.train, args.val, args.log
    )
    ref = Reference(
        scaled, train_end, val_end, args.lookback, args.horizon, 1, args.m, args.layers, args.batch, args.lr, args.seed
    )
    epochs = []
    for _ in range(args.epochs):
        t = time.perf_counter()
        ref.train_epoch()
        ref.mse(ref.val)
        epochs.append(time.perf_counter() - t)
    f = ref.forecast(ref.test).double().numpy()[..., 0] * std[0] + mean[0]
    if args.log:
        f = np.exp(f)
    actual = raw[ref.test.numpy()[:, None] + np.arange(args.horizon), 0]
    print(
        json.dumps(
            {"test_mae": float(np.abs(f - actual).mean()), "epoch_s": epochs, "seconds": time.perf_counter() - start}
        )
    )


if __name__ == "__main__":
    main()
