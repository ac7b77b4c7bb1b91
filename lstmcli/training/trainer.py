"""The only optimisation loop: fused nn.LSTM, fused AdamW (``training.optim``), ``train.loss`` on
scaled targets, early stopping. Setup, one epoch, validation and the early-stopping bookkeeping are named
parts of :class:`Trainer`; :func:`fit` runs them, telling a :class:`~lstmcli.training.hooks.Hooks`."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Literal, cast

import numpy as np
import torch
from torch import nn

from lstmcli.config import Config
from lstmcli.data.dataset import Dataset
from lstmcli.data.windows import Windows
from lstmcli.errors import TrainingError
from lstmcli.model.forecaster import LSTMForecaster
from lstmcli.training.device import resolve_device
from lstmcli.training.distributed import Dist, init
from lstmcli.training.graphs import StaticStep
from lstmcli.training.hooks import EpochReport, Hooks, Stopped
from lstmcli.training.optim import make_optimizer, make_scheduler
from lstmcli.training.threads import ThreadChoice, choose_threads, work_per_step


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
    refit_epoch: int | None = None  # epochs of the refit done (None: not refitting, or not yet)


@dataclass
class TrainResult:
    model: LSTMForecaster
    windows: Windows
    state: TrainState
    device: str
    precision: str
    batch_size: int
    threads: ThreadChoice | None = None
    patience: int = 0  # the early-stopping patience trained with (train.patience: auto chooses it)
    # The model as early stopping chose it, which never saw the validation windows: it gives the
    # validation scores and the intervals' calibration. The same object as ``model`` without a refit.
    holdout_model: LSTMForecaster | None = None
    refit_epochs: int = 0  # epochs of the refit on the training and validation windows (0: none)

    @property
    def scored_model(self) -> LSTMForecaster:
        """The model that has not seen the validation windows."""
        return self.holdout_model or self.model


def pinball_sum(pred: torch.Tensor, y: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
    """Sum over the values of ``y`` (B, H, k) of the pinball loss of the quantile forecasts ``pred``
    (B, H, k, Q) at levels ``taus`` (Q,), averaged over the Q quantiles: τ·(y − q) where y is above
    q, (1 − τ)·(q − y) below (so the median's is half the absolute error)."""
    d = y.unsqueeze(-1) - pred
    return torch.maximum(taus * d, (taus - 1) * d).mean(dim=-1).sum()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


StaticStepMode = Literal["auto", "eager", "captured"]

AUTO_BATCH = 64
MIN_STEPS, MAX_STEPS = 16, 256  # optimiser steps per epoch that train.batch_size: auto aims between


def batch_size_for(setting: int | str, windows: int) -> int:
    """``train.batch_size``, or for ``auto`` the batch for ``windows`` training windows: 64, halved
    (to 8 at least) until an epoch takes MIN_STEPS steps, doubled (to 1024 at most) until it takes at
    most MAX_STEPS. A short series then gets enough steps to fit at all, and a global model over
    thousands of series fewer, larger steps: on the M3 monthly data (46,000 windows) batches of 256
    beat batches of 64 by 4% sMAPE, which overfit after one epoch (BENCHMARKS.md)."""
    if isinstance(setting, int):
        return setting
    batch = AUTO_BATCH
    while batch > 8 and windows < MIN_STEPS * batch:
        batch //= 2
    while batch < 1024 and windows > MAX_STEPS * batch:
        batch *= 2
    return batch


PATIENCE_STEPS = 400  # optimiser steps without a better val loss that train.patience: auto waits
MIN_PATIENCE, MAX_PATIENCE = 20, 100


def patience_for(setting: int | str, steps_per_epoch: int) -> int:
    """``train.patience``, or for ``auto`` the epochs that make PATIENCE_STEPS optimiser steps,
    MIN_PATIENCE to MAX_PATIENCE. A global model's epoch is hundreds of steps, and 20 epochs are
    plenty; a short series' epoch is a few steps, and 20 of them stopped training before it had
    learnt: on 32 single M3 series patience 40 gave 7% lower validation relMAE (BENCHMARKS.md)."""
    if isinstance(setting, int):
        return setting
    return min(max(math.ceil(PATIENCE_STEPS / max(steps_per_epoch, 1)), MIN_PATIENCE), MAX_PATIENCE)


class Trainer:
    """Named parts of the loop: setup, one epoch, validation, the early-stopping bookkeeping."""

    def __init__(
        self,
        cfg: Config,
        ds: Dataset,
        device: torch.device | None = None,
        dist: Dist | None = None,
        static_step: StaticStepMode = "auto",
    ) -> None:
        """``static_step``: "auto" replays full batches as a captured CUDA graph where that is
        possible (one GPU, no fp16 loss scaling, ``train.cuda_graphs``); "eager" takes the same
        static-step path without capturing it, on any device (how the graph path is verified);
        "captured" requires the capture."""
        self.cfg, self.tc = cfg, cfg.train
        self.dist = dist or Dist()
        rank = self.dist.local_rank if self.dist.enabled else None
        self.device = device or resolve_device(self.tc.device, self.dist.local_world, rank)
        init(self.dist, self.device)
        seed_everything(self.tc.seed)  # every rank builds the same initial weights
        self.model = LSTMForecaster.from_config(cfg).to(self.device)
        # The module that trains: DDP averages gradients across ranks; evaluation uses self.model.
        self.net: nn.Module = self._wrapped(self.model)
        series = torch.as_tensor(ds.scaled, device=self.device)  # (N, n): the only copy of the data
        starts = ds.row_starts()
        starts_t = None if starts is None else torch.as_tensor(starts, device=self.device)
        self.windows = Windows(
            series, cfg.data.lookback, cfg.data.horizon, ds.n_targets, starts_t, cfg.data.future_columns
        )
        self.train_origins = torch.as_tensor(ds.origins("train"), device=self.device)
        self.val_origins = torch.as_tensor(ds.origins("val"), device=self.device)
        self.batch_size = batch_size_for(self.tc.batch_size, len(self.train_origins))
        self.patience = patience_for(self.tc.patience, math.ceil(len(self.train_origins) / self.batch_size))
        self.threads: ThreadChoice | None = None  # the CPU threads (on the CPU only)
        if self.device.type == "cpu":
            mc = cfg.model
            work = work_per_step(mc.n, mc.m, mc.layers, self.batch_size)
            self.threads = choose_threads(self.tc.threads, work, self.dist.local_world)
            torch.set_num_threads(self.threads.threads)
        self.autocast_dtype = _autocast_dtype(self.tc.precision, self.device)
        self.grad_scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype is torch.float16 else None
        # One GPU, no loss scaling: full batches replay the whole step as one CUDA graph.
        capturable = self.device.type == "cuda" and not self.dist.enabled and self.grad_scaler is None
        self.use_graph = static_step == "eager" or (capturable and (static_step == "captured" or self.tc.cuda_graphs))
        self.capture = capturable and static_step != "eager"
        self.static_step: StaticStep | None = None
        self.static_lr: float | None = None
        self.optimizer = make_optimizer(self.model, self.tc)
        self.scheduler = make_scheduler(self.optimizer, self.tc, self.patience)
        # The shuffle has its own generator so that its stream is saved and restored on resume.
        self.shuffle = torch.Generator().manual_seed(self.tc.seed)
        self.state = TrainState()
        self._taus = torch.tensor(self.model.quantiles or (0.5,), device=self.device)

    def _wrapped(self, model: LSTMForecaster) -> nn.Module:
        if not self.dist.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    @property
    def precision(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.autocast_dtype, "fp32")  # type: ignore[arg-type]

    def _sq_error(self, net: nn.Module, origins: torch.Tensor) -> torch.Tensor:
        """Sum of the loss (``train.loss``: squared, absolute or Huber errors, or the pinball loss
        averaged over the quantiles, in scaled units) over the windows at ``origins``."""
        x = self.windows.inputs(origins)  # (B, L, n)
        y = self.windows.targets(origins)  # (B, H, k)
        quantile = self.tc.loss == "quantile"
        # Training an ensemble: each member's forecast, (K, B, H, k[, Q]), its loss summed over them,
        # so that each member's gradient is the one it would have alone. Validation: their mean.
        members = net.training and self.model.members > 1
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
            cache_enabled=not self.use_graph,  # autocast's weight cache cannot live across graph replays
        ):
            pred = net(x, quantiles=quantile, members=members)  # (B, H, k, Q) or (B, H, k)
        pred = pred.float()
        if self.model.window_scale:  # errors in each window's own scale, as its inputs are
            scale = self.model.scale(x)
            pred, y = pred / (scale.unsqueeze(-1) if quantile else scale), y / scale
        if quantile:
            return pinball_sum(pred, y, self._taus)
        y = y.expand_as(pred)  # an ensemble's members, each against the same targets
        if self.tc.loss == "mae":
            return nn.functional.l1_loss(pred, y, reduction="sum")
        if self.tc.loss == "huber":
            return nn.functional.huber_loss(pred, y, reduction="sum", delta=1.0)
        return nn.functional.mse_loss(pred, y, reduction="sum")

    def train_epoch(self, hooks: Hooks | None = None) -> float:
        """One pass over the shuffled training windows; the loss is read back once, at the end.
        ``hooks.should_stop()`` is asked before every batch (True raises Stopped)."""
        self.net.train()
        order = torch.randperm(len(self.train_origins), generator=self.shuffle).to(self.device)
        total = torch.zeros((), device=self.device)
        bs, world = self.batch_size, self.dist.world
        seen = 0
        batches = -(-len(order) // bs)
        for n, start in enumerate(range(0, len(order), bs)):
            if hooks is not None:
                if hooks.should_stop():
                    raise Stopped
                hooks.on_batch(n, batches)
            batch = self.train_origins[order[start : start + bs]]
            if len(batch) < world:
                break  # a last batch too small to give every rank a window is skipped by all
            if self.use_graph and len(batch) == bs:
                total += self._graphed(batch)(batch)  # accumulated before the next replay overwrites it
            else:
                self.optimizer.zero_grad(set_to_none=True)
                total += self._step(self.dist.shard(batch), len(batch))
            seen += len(batch)
        if hooks is not None:
            hooks.on_batch(batches, batches)
        return float(self.dist.sum(total)) / (seen * self.windows.values_per_window)

    def _step(self, origins: torch.Tensor, global_batch: int) -> torch.Tensor:
        """Forward, backward, clip, update for this rank's ``origins``; returns their summed loss (an
        ensemble's: the mean over its members).

        The loss is the mean over the global batch; with K ranks each differentiates its share
        times K, so DDP's gradient average is that mean's gradient.
        """
        sq = self._sq_error(self.net, origins)
        loss = sq * (self.dist.world / (global_batch * self.windows.values_per_window))
        if self.grad_scaler is not None:
            # GradScaler needs only param_groups and step() of the optimizer it is given
            opt = cast("torch.optim.Optimizer", self.optimizer)
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(opt)
            self._clip()
            self.grad_scaler.step(opt)
            self.grad_scaler.update()
        else:
            loss.backward()
            self._clip()
            self.optimizer.step()
        return sq.detach() / self.model.members

    def _graphed(self, batch: torch.Tensor) -> StaticStep:
        """The captured full-batch step, captured again when the learning rate has changed
        (a graph bakes in the scalar it was captured with)."""
        lr = self.optimizer.param_groups[0]["lr"]
        if self.static_step is None or self.static_lr != lr:
            bs = len(batch)
            self.static_step = StaticStep(
                self.model, self.optimizer, lambda o: self._step(o, bs), bs, batch, self.capture
            )
            self.static_lr = lr
        return self.static_step

    def _clip(self) -> None:
        if self.tc.grad_clip:
            for params in self.model.member_parameters():  # each member's norm, as it would be alone
                nn.utils.clip_grad_norm_(params, self.tc.grad_clip)

    @torch.no_grad()
    def val_loss(self) -> float:
        """Mean of the training loss (``train.loss``) over every validation window, in scaled units."""
        self.model.eval()
        total = torch.zeros((), device=self.device)
        mine = self.dist.shard(self.val_origins)
        chunk = self.windows.eval_chunk()  # bounded B*L: memory does not grow with the lookback
        for start in range(0, len(mine), chunk):
            total += self._sq_error(self.model, mine[start : start + chunk])
        self.model.train()
        return float(self.dist.sum(total)) / (len(self.val_origins) * self.windows.values_per_window)

    def end_epoch(self, train_loss: float, val_loss: float, seconds: float) -> EpochReport:
        """Record the epoch, keep the best weights, step the schedule, decide on stopping."""
        st = self.state
        st.epoch += 1
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            kept = (
                f"the best weights (epoch {st.best_epoch}) are kept"
                if st.best_epoch
                else "no epoch had finished, so there are no weights to keep"
            )
            raise TrainingError(
                f"training diverged at epoch {st.epoch} (train loss {train_loss}, val loss {val_loss}); "
                f"{kept}. Try a lower train.lr (now {self.tc.lr:g}), a smaller train.grad_clip "
                f"(now {self.tc.grad_clip}), or check the data's scale"
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
        if self.scheduler is not None:
            self.scheduler.step(val_loss)
        st.stopped_early = st.bad_epochs >= self.patience and st.epoch < self.tc.epochs
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
            patience=self.patience,
            bad_epochs=st.bad_epochs,
        )

    @property
    def done(self) -> bool:
        return self.state.stopped_early or self.state.epoch >= self.tc.epochs

    def restore_best(self) -> None:
        if self.state.best_weights is not None:
            self.model.load_state_dict(self.state.best_weights)

    # -----------------------------------------------------------------------------------------
    # The refit (train.refit): once early stopping has chosen the epoch, a fresh model trains on
    # the training and validation windows for that many epochs, at the learning rate each of
    # those epochs had. It has seen the latest rows before the test split, as ETS and Theta fitted
    # to them have; the early-stopped model keeps the validation scores, which it never saw.

    @property
    def refit_epochs(self) -> int:
        """Epochs the refit runs: the best epoch's number (0: no refit, or nothing to refit on)."""
        if not self.tc.refit or len(self.val_origins) == 0:
            return 0
        return self.state.best_epoch

    def begin_refit(self) -> None:
        """The fresh model, built from the same seed, its optimizer, and the windows it trains on.
        Called at the end of early stopping, or before a refit's checkpoint is restored."""
        seed_everything(self.tc.seed)
        self.model = LSTMForecaster.from_config(self.cfg).to(self.device)
        self.net = self._wrapped(self.model)
        self.optimizer = make_optimizer(self.model, self.tc)
        self.scheduler = None  # the rates are the early-stopped run's, epoch by epoch
        self.static_step, self.static_lr = None, None
        self.train_origins = torch.cat([self.train_origins, self.val_origins])
        self.shuffle = torch.Generator().manual_seed(self.tc.seed)
        if self.state.refit_epoch is None:
            self.state.refit_epoch = 0

    def refit_epoch(self, hooks: Hooks | None = None) -> float:
        """One epoch of the refit at the rate that epoch had before; returns its training loss."""
        st = self.state
        assert st.refit_epoch is not None
        self.optimizer.param_groups[0]["lr"] = st.history[st.refit_epoch]["lr"]
        loss = self.train_epoch(hooks)
        if not math.isfinite(loss):
            raise TrainingError(
                f"the refit on the training and validation windows diverged at its epoch {st.refit_epoch + 1} "
                f"(train loss {loss}); set train.refit: false to keep the early-stopped model, or try a lower "
                f"train.lr (now {self.tc.lr:g})"
            )
        st.refit_epoch += 1
        return loss

    def early_stopped_model(self) -> LSTMForecaster:
        """The early-stopped model (best validation weights), beside the refit one."""
        model = LSTMForecaster.from_config(self.cfg).to(self.device)
        if self.state.best_weights is not None:
            model.load_state_dict(self.state.best_weights)
        return model.eval()


def fit(trainer: Trainer, hooks: Hooks | None = None) -> TrainResult:
    """Train until ``epochs`` or early stopping, then restore the best validation weights.

    ``hooks`` hears of every epoch and may stop training before any batch. Pass a trainer restored
    from a checkpoint (``training.state.restore``) to resume.
    """
    tr, hooks = trainer, hooks or Hooks()
    while not tr.done and tr.state.refit_epoch is None:
        if hooks.should_stop():
            raise Stopped
        start = time.perf_counter()
        train_loss = tr.train_epoch(hooks)
        val_loss = tr.val_loss() if math.isfinite(train_loss) else math.nan
        hooks.on_epoch_end(tr.end_epoch(train_loss, val_loss, time.perf_counter() - start))
    epochs = tr.refit_epochs
    holdout = None
    if epochs:
        if tr.state.refit_epoch is None:
            tr.begin_refit()
        hooks.on_refit_start(epochs, tr.state.refit_epoch or 0)
        while (tr.state.refit_epoch or 0) < epochs:
            if hooks.should_stop():
                raise Stopped
            start = time.perf_counter()
            loss = tr.refit_epoch(hooks)
            hooks.on_refit_epoch(tr.state.refit_epoch or 0, epochs, loss, time.perf_counter() - start)
        holdout = tr.early_stopped_model()
    else:
        tr.restore_best()
    tr.model.eval()
    tr.net = tr.model  # training is over: drop the DDP wrapper before the process group goes
    return TrainResult(
        model=tr.model,
        windows=tr.windows,
        state=tr.state,
        device=str(tr.device),
        precision=tr.precision,
        batch_size=tr.batch_size,
        threads=tr.threads,
        patience=tr.patience,
        holdout_model=holdout,
        refit_epochs=epochs,
    )


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    # Autocast pays only on CUDA tensor cores; on the CPU and MPS the run stays in fp32.
    if precision == "fp32" or device.type != "cuda":
        return None
    return torch.bfloat16 if precision == "bf16" else torch.float16
