"""Adam/AdamW and the two learning-rate schedules, without ``torch.optim``.

Building any ``torch.optim`` optimizer imports ``torch._dynamo`` (its methods are wrapped to be
skipped by ``torch.compile``), and every ``step()`` calls into it: 0.75 s on a 2-vCPU Xeon, more
than a short run spends training (BENCHMARKS.md). This module keeps the same algorithms without it.
The update is torch's own fused kernel (``torch._fused_adam_`` / ``torch._fused_adamw_``: every
tensor in one call), the one ``torch.optim.AdamW(fused=True)`` runs, with the step counters on
the parameters' device, so a CUDA graph can capture it. A device without that kernel (torch < 2.4
on the CPU, MPS) runs the same algorithm tensor by tensor. tests/test_optim.py checks both
against ``torch.optim`` step for step (equal weights, bit for bit) and the schedules against
``torch.optim.lr_scheduler`` (plateau: equal; cosine: the closed form, which torch computes
recursively, equal within 1e-12).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, cast

import torch

from lstmcli.config import TrainConfig

BETAS = (0.9, 0.999)
EPS = 1e-8
PLATEAU_THRESHOLD = 1e-4  # a val loss must beat the best by this fraction to count as better
PLATEAU_MIN_CHANGE = 1e-8  # a smaller cut of the learning rate is skipped (torch's eps)
STATE_KEYS = ("step", "exp_avg", "exp_avg_sq")


class Adam:
    """Adam (L2 weight decay added to the gradient) or, with ``decoupled``, AdamW.

    The interface is the part of ``torch.optim.Optimizer`` the trainer, ``torch.amp.GradScaler``
    and the checkpoints use: ``param_groups`` (one group; its ``lr`` is what the schedules set),
    ``state`` (per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``), ``zero_grad``, ``step``,
    ``state_dict`` and ``load_state_dict`` in torch's layout.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        weight_decay: float = 0.0,
        decoupled: bool = True,
        fused: bool | None = None,
    ) -> None:
        self.params: list[torch.Tensor] = list(params)
        if not self.params:
            raise ValueError("the optimizer got no parameters")
        self.param_groups: list[dict[str, Any]] = [
            {"params": self.params, "lr": lr, "betas": BETAS, "eps": EPS, "weight_decay": weight_decay}
        ]
        self.decoupled = decoupled
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        self.fused = _has_fused_kernel(self.params[0].device) if fused is None else fused
        # GradScaler (fp16) then hands step() its scale and inf flag as attributes instead of
        # reading the flag back to the host every step; the fused kernel skips the update on inf.
        self._step_supports_amp_scaling = self.fused

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (``set_to_none`` is accepted for torch's signature; it is always so)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        params = [p for p in self.params if p.grad is not None]
        if not params:
            return
        states = [self.state.get(p) or self._new_state(p) for p in params]
        grads = [cast(torch.Tensor, p.grad) for p in params]
        steps, exp_avgs, exp_avg_sqs = ([s[k] for s in states] for k in STATE_KEYS)
        group = self.param_groups[0]
        lr, wd = group["lr"], group["weight_decay"]
        if self.fused:
            found_inf = getattr(self, "found_inf", None)  # set by GradScaler.step around this call
            torch._foreach_add_(steps, 1)
            kernel = torch._fused_adamw_ if self.decoupled else torch._fused_adam_
            kernel(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                [],
                steps,
                amsgrad=False,
                lr=lr,
                beta1=BETAS[0],
                beta2=BETAS[1],
                weight_decay=wd,
                eps=EPS,
                maximize=False,
                grad_scale=getattr(self, "grad_scale", None),
                found_inf=found_inf,
            )
            if found_inf is not None:  # a skipped update does not count as a step
                torch._foreach_sub_(steps, [found_inf] * len(steps))
            return
        for p, g, t, m, v in zip(params, grads, steps, exp_avgs, exp_avg_sqs, strict=True):
            _adam_one(p, g, t, m, v, lr, wd, self.decoupled)

    def _new_state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        state = {
            "step": torch.zeros((), dtype=torch.float32, device=p.device),
            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
        }
        self.state[p] = state
        return state

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: ``state`` keyed by parameter index, ``param_groups`` with index lists."""
        index = {p: i for i, p in enumerate(self.params)}
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {
            "state": {index[p]: dict(s) for p, s in self.state.items()},
            "param_groups": [{**group, "params": list(range(len(self.params)))}],
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Load a ``state_dict`` (ours or ``torch.optim``'s); raises ValueError when it does not fit.

        Only the learning rate is taken from the saved group: the other hyperparameters come
        from the config, which resuming checks is unchanged.
        """
        groups = saved["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            sizes = [len(g["params"]) for g in groups]
            raise ValueError(f"saved parameter groups of sizes {sizes}, expected one of {len(self.params)}")
        state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        for pid, values in saved["state"].items():
            if not 0 <= int(pid) < len(self.params):
                raise ValueError(f"optimizer state for parameter {pid}, which does not exist")
            p = self.params[int(pid)]
            missing = [k for k in STATE_KEYS if not isinstance(values.get(k), torch.Tensor)]
            if missing:
                raise ValueError(f"optimizer state {pid} lacks the tensor(s) {', '.join(missing)}")
            for key in ("exp_avg", "exp_avg_sq"):
                if tuple(values[key].shape) != tuple(p.shape):
                    raise ValueError(
                        f"optimizer state {pid}.{key} has shape {tuple(values[key].shape)}, "
                        f"the parameter {tuple(p.shape)}"
                    )
            state[p] = {
                "step": values["step"].to(device=p.device, dtype=torch.float32).reshape(()),
                "exp_avg": values["exp_avg"].to(device=p.device, dtype=p.dtype),
                "exp_avg_sq": values["exp_avg_sq"].to(device=p.device, dtype=p.dtype),
            }
        self.state = state
        self.param_groups[0]["lr"] = float(groups[0]["lr"])


def _adam_one(
    p: torch.Tensor,
    g: torch.Tensor,
    step: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    lr: float,
    wd: float,
    decoupled: bool,
) -> None:
    """One tensor's update, as ``torch.optim``'s single-tensor path computes it."""
    step += 1
    if wd != 0:
        if decoupled:
            p.mul_(1 - lr * wd)
        else:
            g = g.add(p, alpha=wd)
    exp_avg.lerp_(g, 1 - BETAS[0])
    exp_avg_sq.mul_(BETAS[1]).addcmul_(g, g, value=1 - BETAS[1])
    t = step.item()
    step_size = lr / (1 - BETAS[0] ** t)
    denom = (exp_avg_sq.sqrt() / (1 - BETAS[1] ** t) ** 0.5).add_(EPS)
    p.addcdiv_(exp_avg, denom, value=-step_size)


def _has_fused_kernel(device: torch.device) -> bool:
    """Whether torch has the fused Adam kernel for ``device`` (one tiny call tells)."""
    try:
        z = [torch.zeros(1, device=device) for _ in range(4)]
        torch._fused_adamw_(
            [z[0]],
            [z[1]],
            [z[2]],
            [z[3]],
            [],
            [torch.zeros((), device=device)],
            amsgrad=False,
            lr=0.0,
            beta1=0.9,
            beta2=0.999,
            weight_decay=0.0,
            eps=EPS,
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )
    except (AttributeError, NotImplementedError, RuntimeError, TypeError):
        return False
    return True


class Plateau:
    """Halve the learning rate when the val loss has not improved for ``patience`` epochs
    (``torch.optim.lr_scheduler.ReduceLROnPlateau`` with mode min, relative threshold 1e-4)."""

    def __init__(self, opt: Adam, factor: float, patience: int) -> None:
        self.opt, self.factor, self.patience = opt, factor, patience
        self.best, self.num_bad_epochs, self.last_epoch = math.inf, 0, 0

    def step(self, val_loss: float) -> None:
        self.last_epoch += 1
        if val_loss < self.best * (1 - PLATEAU_THRESHOLD):
            self.best, self.num_bad_epochs = val_loss, 0
        else:
            self.num_bad_epochs += 1
        if self.num_bad_epochs > self.patience:
            group = self.opt.param_groups[0]
            lowered = group["lr"] * self.factor
            if group["lr"] - lowered > PLATEAU_MIN_CHANGE:
                group["lr"] = lowered
            self.num_bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "num_bad_epochs": self.num_bad_epochs, "last_epoch": self.last_epoch}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.best = float(saved["best"])
        self.num_bad_epochs, self.last_epoch = int(saved["num_bad_epochs"]), int(saved["last_epoch"])


class Cosine:
    """Anneal the learning rate from its start to 1% of it over ``epochs``, along half a cosine."""

    def __init__(self, opt: Adam, epochs: int, final_fraction: float = 0.01) -> None:
        self.opt, self.epochs = opt, epochs
        self.base = opt.param_groups[0]["lr"]
        self.floor = self.base * final_fraction
        self.last_epoch = 0

    def step(self, val_loss: float) -> None:  # noqa: ARG002 - the schedules share one signature
        self.last_epoch += 1
        progress = math.pi * self.last_epoch / self.epochs
        self.opt.param_groups[0]["lr"] = self.floor + (self.base - self.floor) * (1 + math.cos(progress)) / 2

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.last_epoch = int(saved["last_epoch"])


def make_optimizer(model: torch.nn.Module, tc: TrainConfig) -> Adam:
    """The config's optimizer over the model's parameters."""
    return Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, decoupled=tc.optimizer == "adamw")


def make_scheduler(opt: Adam, tc: TrainConfig, patience: int) -> Plateau | Cosine | None:
    """The config's learning-rate schedule, stepped once per epoch with the val loss; the plateau
    halves the rate after a quarter of the early-stopping ``patience``."""
    if tc.schedule == "plateau":
        return Plateau(opt, factor=0.5, patience=max(1, patience // 4))
    if tc.schedule == "cosine":
        return Cosine(opt, tc.epochs)
    return None
