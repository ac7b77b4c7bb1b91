"""The only optimisation loop: fused nn.LSTM, AdamW, MSE on scaled targets, early stopping."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lstmcli.config import Config, TrainConfig
from lstmcli.data import Dataset
from lstmcli.errors import ConfigError, TrainingError
from lstmcli.model import LSTMForecaster
from lstmcli.windows import Windows


@dataclass
class EpochReport:
    """What the progress display needs after each epoch."""

    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    best_val: float
    best_epoch: int
    lr: float
    seconds: float
    windows_per_s: float
    improved: bool


@dataclass
class TrainState:
    """Everything needed to continue training exactly where it stopped."""

    epoch: int = 0  # epochs completed
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_weights: dict[str, torch.Tensor] | None = None
    stopped_early: bool = False


@dataclass
class TrainResult:
    model: LSTMForecaster
    windows: Windows
    state: TrainState
    device: str
    precision: str


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; an explicit choice must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda was asked for but torch sees no CUDA device; use auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("train.device: mps was asked for but is not available; use auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Named parts of the loop: setup, one epoch, validation, the early-stopping bookkeeping."""

    def __init__(self, cfg: Config, ds: Dataset, device: torch.device | None = None) -> None:
        self.cfg, self.tc = cfg, cfg.train
        if self.tc.threads:
            torch.set_num_threads(self.tc.threads)
        self.device = device or resolve_device(self.tc.device)
        seed_everything(self.tc.seed)
        self.model = LSTMForecaster.from_config(cfg).to(self.device)
        series = torch.as_tensor(ds.scaled, device=self.device)  # (N, n): the only copy of the data
        self.windows = Windows(series, cfg.data.lookback, cfg.data.horizon, ds.n_targets)
        self.train_origins = torch.as_tensor(ds.split.origins("train"), device=self.device)
        self.val_origins = torch.as_tensor(ds.split.origins("val"), device=self.device)
        self.optimizer = make_optimizer(self.model, self.tc)
        self.scheduler = make_scheduler(self.optimizer, self.tc)
        # The shuffle has its own generator so that its stream is saved and restored on resume.
        self.shuffle = torch.Generator().manual_seed(self.tc.seed)
        self.autocast_dtype = _autocast_dtype(self.tc.precision, self.device)
        self.grad_scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype is torch.float16 else None
        self.state = TrainState()

    @property
    def precision(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.autocast_dtype, "fp32")  # type: ignore[arg-type]

    def _forward(self, origins: torch.Tensor) -> torch.Tensor:
        x = self.windows.inputs(origins)  # (B, L, n)
        y = self.windows.targets(origins)  # (B, H, k)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None):
            pred = self.model(x)  # (B, H, k)
        return nn.functional.mse_loss(pred.float(), y)

    def train_epoch(self) -> float:
        """One pass over the shuffled training windows; the loss is read back once, at the end."""
        self.model.train()
        order = torch.randperm(len(self.train_origins), generator=self.shuffle).to(self.device)
        total = torch.zeros((), device=self.device)
        bs = self.tc.batch_size
        for start in range(0, len(order), bs):
            origins = self.train_origins[order[start : start + bs]]
            loss = self._forward(origins)
            self.optimizer.zero_grad(set_to_none=True)
            if self.grad_scaler is not None:
                self.grad_scaler.scale(loss).backward()
                self.grad_scaler.unscale_(self.optimizer)
                self._clip()
                self.grad_scaler.step(self.optimizer)
                self.grad_scaler.update()
            else:
                loss.backward()
                self._clip()
                self.optimizer.step()
            total += loss.detach() * len(origins)
        return float(total) / len(order)

    def _clip(self) -> None:
        if self.tc.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)

    @torch.no_grad()
    def val_loss(self) -> float:
        """Mean squared error over every validation window (scaled units)."""
        self.model.eval()
        total = torch.zeros((), device=self.device)
        chunk = self.windows.eval_chunk()  # bounded B*L: memory does not grow with the lookback
        for start in range(0, len(self.val_origins), chunk):
            origins = self.val_origins[start : start + chunk]
            total += self._forward(origins) * len(origins)
        self.model.train()
        return float(total) / len(self.val_origins)

    def end_epoch(self, train_loss: float, val_loss: float, seconds: float) -> EpochReport:
        """Record the epoch, keep the best weights, step the schedule, decide on stopping."""
        st = self.state
        st.epoch += 1
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise TrainingError(
                f"training diverged at epoch {st.epoch} (train loss {train_loss}, val loss {val_loss}); "
                f"the best weights (epoch {st.best_epoch}) are kept. Try a lower train.lr "
                f"(now {self.tc.lr:g}), a smaller train.grad_clip, or check the data's scale"
            )
        lr = self.optimizer.param_groups[0]["lr"]
        improved = val_loss < st.best_val
        if improved:
            st.best_val, st.best_epoch, st.bad_epochs = val_loss, st.epoch, 0
            st.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            st.bad_epochs += 1
        st.history.append(
            {"epoch": st.epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr, "seconds": seconds}
        )
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_loss)
        elif self.scheduler is not None:
            self.scheduler.step()
        st.stopped_early = st.bad_epochs >= self.tc.patience and st.epoch < self.tc.epochs
        return EpochReport(
            epoch=st.epoch,
            epochs=self.tc.epochs,
            train_loss=train_loss,
            val_loss=val_loss,
            best_val=st.best_val,
            best_epoch=st.best_epoch,
            lr=lr,
            seconds=seconds,
            windows_per_s=len(self.train_origins) / seconds if seconds > 0 else math.inf,
            improved=improved,
        )

    @property
    def done(self) -> bool:
        return self.state.stopped_early or self.state.epoch >= self.tc.epochs

    def restore_best(self) -> None:
        if self.state.best_weights is not None:
            self.model.load_state_dict(self.state.best_weights)


def fit(
    cfg: Config,
    ds: Dataset,
    on_epoch_end: Callable[[EpochReport], None] | None = None,
    after_epoch: Callable[[Trainer], None] | None = None,
    trainer: Trainer | None = None,
) -> TrainResult:
    """Train until ``epochs`` or early stopping, then restore the best validation weights.

    ``on_epoch_end`` receives each epoch's report (progress display); ``after_epoch`` receives the
    trainer itself (checkpointing). Pass a ``trainer`` restored from a checkpoint to resume.
    """
    tr = trainer or Trainer(cfg, ds)
    while not tr.done:
        start = time.perf_counter()
        train_loss = tr.train_epoch()
        val_loss = tr.val_loss() if math.isfinite(train_loss) else math.nan
        report = tr.end_epoch(train_loss, val_loss, time.perf_counter() - start)
        if after_epoch is not None:
            after_epoch(tr)
        if on_epoch_end is not None:
            on_epoch_end(report)
    tr.restore_best()
    tr.model.eval()
    return TrainResult(model=tr.model, windows=tr.windows, state=tr.state, device=str(tr.device), precision=tr.precision)


def make_optimizer(model: nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if tc.optimizer == "adamw" else torch.optim.Adam
    # The fused kernel updates every tensor in one call. The default (for-loop) implementation
    # issues ~10 small ops per parameter tensor from Python, which on a small model cost ~20% of
    # the CPU step (BENCHMARKS.md). Same algorithm; torch < 2.4 has no fused CPU kernel.
    device = next(model.parameters()).device
    if device.type in ("cpu", "cuda"):
        try:
            return cls(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return cls(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, tc: TrainConfig) -> Any:
    if tc.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(1, tc.patience // 4))
    if tc.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=tc.epochs, eta_min=tc.lr * 0.01)
    return None


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    # Autocast pays only on CUDA tensor cores; on the CPU and MPS the run stays in fp32.
    if precision == "fp32" or device.type != "cuda":
        return None
    return torch.bfloat16 if precision == "bf16" else torch.float16
