"""The only optimisation loop: fused nn.LSTM, fused AdamW (lstmcli.training.optim), MSE on scaled targets, early stopping."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

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
from lstmcli.training.optim import make_optimizer, make_scheduler


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Named parts of the loop: setup, one epoch, validation, the early-stopping bookkeeping."""

    def __init__(self, cfg: Config, ds: Dataset, device: torch.device | None = None, dist: Dist | None = None) -> None:
        self.cfg, self.tc = cfg, cfg.train
        self.dist = dist or Dist()
        if self.tc.threads:
            torch.set_num_threads(self.tc.threads)
        rank = self.dist.local_rank if self.dist.enabled else None
        self.device = device or resolve_device(self.tc.device, self.dist.local_world, rank)
        init(self.dist, self.device)
        seed_everything(self.tc.seed)  # every rank builds the same initial weights
        self.model = LSTMForecaster.from_config(cfg).to(self.device)
        # The module that trains: DDP averages gradients across ranks; evaluation uses self.model.
        self.net: nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        series = torch.as_tensor(ds.scaled, device=self.device)  # (N, n): the only copy of the data
        self.windows = Windows(series, cfg.data.lookback, cfg.data.horizon, ds.n_targets)
        self.train_origins = torch.as_tensor(ds.origins("train"), device=self.device)
        self.val_origins = torch.as_tensor(ds.origins("val"), device=self.device)
        self.autocast_dtype = _autocast_dtype(self.tc.precision, self.device)
        self.grad_scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype is torch.float16 else None
        # One GPU, no loss scaling: full batches replay the whole step as one CUDA graph.
        self.use_graph = (
            self.device.type == "cuda" and self.tc.cuda_graphs and not self.dist.enabled and self.grad_scaler is None
        )
        self.capture = self.use_graph  # False runs the graph path's bookkeeping eagerly (tests on the CPU)
        self.static_step: StaticStep | None = None
        self.static_lr: float | None = None
        self.optimizer = make_optimizer(self.model, self.tc)
        self.scheduler = make_scheduler(self.optimizer, self.tc)
        # The shuffle has its own generator so that its stream is saved and restored on resume.
        self.shuffle = torch.Generator().manual_seed(self.tc.seed)
        self.state = TrainState()
        # Called before every batch and after every epoch; raises to stop (signals, see pipeline).
        self.poll: Callable[[], None] | None = None

    @property
    def precision(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.autocast_dtype, "fp32")  # type: ignore[arg-type]

    def _sq_error(self, net: nn.Module, origins: torch.Tensor) -> torch.Tensor:
        """Sum of squared errors (scaled units) over the windows at ``origins``."""
        x = self.windows.inputs(origins)  # (B, L, n)
        y = self.windows.targets(origins)  # (B, H, k)
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
            cache_enabled=not self.use_graph,  # autocast's weight cache cannot live across graph replays
        ):
            pred = net(x)  # (B, H, k)
        return nn.functional.mse_loss(pred.float(), y, reduction="sum")

    def train_epoch(self) -> float:
        """One pass over the shuffled training windows; the loss is read back once, at the end."""
        self.net.train()
        order = torch.randperm(len(self.train_origins), generator=self.shuffle).to(self.device)
        total = torch.zeros((), device=self.device)
        bs, world = self.tc.batch_size, self.dist.world
        seen = 0
        for start in range(0, len(order), bs):
            if self.poll is not None:
                self.poll()
            batch = self.train_origins[order[start : start + bs]]
            if len(batch) < world:
                break  # a last batch too small to give every rank a window is skipped by all
            if self.use_graph and len(batch) == bs:
                total += self._graphed(batch)(batch)  # accumulated before the next replay overwrites it
            else:
                self.optimizer.zero_grad(set_to_none=True)
                total += self._step(self.dist.shard(batch), len(batch))
            seen += len(batch)
        return float(self.dist.sum(total)) / (seen * self.windows.values_per_window)

    def _step(self, origins: torch.Tensor, global_batch: int) -> torch.Tensor:
        """Forward, backward, clip, update for this rank's ``origins``; returns their summed squared error.

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
        return sq.detach()

    def _graphed(self, batch: torch.Tensor) -> StaticStep:
        """The captured full-batch step, captured again when the learning rate has changed
        (a graph bakes in the scalar it was captured with)."""
        lr = self.optimizer.param_groups[0]["lr"]
        if self.static_step is None or self.static_lr != lr:
            bs = len(batch)
            self.static_step = StaticStep(self.model, self.optimizer, lambda o: self._step(o, bs), bs, batch, self.capture)
            self.static_lr = lr
        return self.static_step

    def _clip(self) -> None:
        if self.tc.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)

    @torch.no_grad()
    def val_loss(self) -> float:
        """Mean squared error over every validation window (scaled units)."""
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

    # -- checkpointing -------------------------------------------------------------------------
    #
    # Bit-identical resumption needs everything that decides the next epoch: the weights, the
    # optimizer's moments and step counts, the scheduler, the shuffle generator, the global torch
    # RNG (dropout), numpy's and python's RNGs, and the early-stopping bookkeeping. Tensors go to
    # safetensors, everything else to JSON; nothing is pickled. (On CUDA, nn.LSTM's dropout uses
    # cuDNN's own state, which cannot be saved: there resumption is exact only without dropout.)

    def snapshot(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The end-of-epoch state as (tensors, JSON-able info)."""
        st = self.state
        tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if st.best_weights is not None:
            tensors.update({f"best.{k}": v for k, v in st.best_weights.items()})
        opt = self.optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, pstate in opt["state"].items():
            for key, value in pstate.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{pid}.{key}"] = value
                else:
                    scalars.setdefault(str(pid), {})[key] = value
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.shuffle"] = self.shuffle.get_state()
        if torch.cuda.is_available() and self.device.type == "cuda":
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = state
        np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
        tensors["rng.numpy_keys"] = torch.from_numpy(np.asarray(np_keys, dtype=np.int64))
        py_version, py_internal, py_gauss = random.getstate()
        info: dict[str, Any] = {
            "epoch": st.epoch,
            "trainer": {
                "best_val": st.best_val,
                "best_epoch": st.best_epoch,
                "bad_epochs": st.bad_epochs,
                "stopped_early": st.stopped_early,
                "history": st.history,
            },
            "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "grad_scaler": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "rng": {
                "numpy": {"kind": np_kind, "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
                "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
            },
        }
        return tensors, info

    def restore(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        """Load a ``snapshot`` back; the next epoch then runs exactly as it would have."""
        self.static_step = None  # a captured graph holds the old state's addresses
        def group(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.model.load_state_dict({k: v.to(self.device) for k, v in group("model.").items()})
        best = group("best.")
        opt_state: dict[int, dict[str, Any]] = {}
        for key, value in group("optim.").items():
            pid, name = key.split(".", 1)
            opt_state.setdefault(int(pid), {})[name] = value
        for pid, values in info["optimizer"]["scalars"].items():
            opt_state.setdefault(int(pid), {}).update(values)
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": info["optimizer"]["param_groups"]})
        if self.scheduler is not None and info.get("scheduler") is not None:
            self.scheduler.load_state_dict(info["scheduler"])
        if self.grad_scaler is not None and info.get("grad_scaler") is not None:
            self.grad_scaler.load_state_dict(info["grad_scaler"])
        torch.set_rng_state(tensors["rng.torch"])
        self.shuffle.set_state(tensors["rng.shuffle"])
        cuda = group("rng.cuda.")
        if cuda and torch.cuda.is_available() and self.device.type == "cuda":
            torch.cuda.set_rng_state_all([cuda[str(i)] for i in range(len(cuda))])
        npr = info["rng"]["numpy"]
        keys = tensors["rng.numpy_keys"].numpy().astype(np.uint32)
        np.random.set_state((npr["kind"], keys, npr["pos"], npr["has_gauss"], npr["gauss"]))
        pyr = info["rng"]["python"]
        random.setstate((pyr["version"], tuple(pyr["internal"]), pyr["gauss"]))
        t = info["trainer"]
        self.state = TrainState(
            epoch=int(info["epoch"]),
            best_val=float(t["best_val"]),
            best_epoch=int(t["best_epoch"]),
            bad_epochs=int(t["bad_epochs"]),
            history=list(t["history"]),
            best_weights={k: v.to(self.device) for k, v in best.items()} or None,
            stopped_early=bool(t["stopped_early"]),
        )


def fit(
    cfg: Config,
    ds: Dataset,
    on_epoch_end: Callable[[EpochReport], None] | None = None,
    after_epoch: Callable[[Trainer], None] | None = None,
    trainer: Trainer | None = None,
    dist: Dist | None = None,
) -> TrainResult:
    """Train until ``epochs`` or early stopping, then restore the best validation weights.

    ``on_epoch_end`` receives each epoch's report (progress display); ``after_epoch`` receives the
    trainer itself (checkpointing). Pass a ``trainer`` restored from a checkpoint to resume.
    """
    tr = trainer or Trainer(cfg, ds, dist=dist)
    while not tr.done:
        if tr.poll is not None:
            tr.poll()
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
    tr.net = tr.model  # training is over: drop the DDP wrapper before the process group goes
    return TrainResult(model=tr.model, windows=tr.windows, state=tr.state, device=str(tr.device), precision=tr.precision)


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    # Autocast pays only on CUDA tensor cores; on the CPU and MPS the run stays in fp32.
    if precision == "fp32" or device.type != "cuda":
        return None
    return torch.bfloat16 if precision == "bf16" else torch.float16
