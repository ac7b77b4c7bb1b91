"""A trainer's end-of-epoch state as tensors and JSON, and back (the checkpoint's contents).

Bit-identical resumption needs everything that decides the next epoch: the weights, the
optimizer's moments and step counts, the scheduler, the shuffle generator, the global torch
RNG (dropout), numpy's and python's RNGs, and the early-stopping bookkeeping. Tensors go to
safetensors, everything else to JSON; nothing is pickled. (On CUDA, nn.LSTM's dropout uses
cuDNN's own state, which cannot be saved: there resumption is exact only without dropout.)

Tensors are named ``model.*``, ``best.*``, ``optim.<param>.<key>`` and ``rng.*``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from lstmcli.training.trainer import Trainer, TrainState


def snapshot(tr: Trainer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The end-of-epoch state as (tensors, JSON-able info)."""
    st = tr.state
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in tr.model.state_dict().items()}
    if st.best_weights is not None:
        tensors.update({f"best.{k}": v for k, v in st.best_weights.items()})
    opt = tr.optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in opt["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.shuffle"] = tr.shuffle.get_state()
    if torch.cuda.is_available() and tr.device.type == "cuda":
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
            "refit_epoch": st.refit_epoch,
        },
        "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
        "scheduler": tr.scheduler.state_dict() if tr.scheduler is not None else None,
        "grad_scaler": tr.grad_scaler.state_dict() if tr.grad_scaler is not None else None,
        "rng": {
            "numpy": {"kind": np_kind, "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
            "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
        },
    }
    return tensors, info


def restore(tr: Trainer, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """Load a ``snapshot`` back; the next epoch then runs exactly as it would have."""
    tr.static_step = None  # a captured graph holds the old state's addresses
    if info["trainer"].get("refit_epoch") is not None:
        tr.begin_refit()  # the checkpoint holds the refit's model and optimizer

    def group(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    tr.model.load_state_dict({k: v.to(tr.device) for k, v in group("model.").items()})
    best = group("best.")
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in group("optim.").items():
        pid, name = key.split(".", 1)
        opt_state.setdefault(int(pid), {})[name] = value
    for pid, values in info["optimizer"]["scalars"].items():
        opt_state.setdefault(int(pid), {}).update(values)
    tr.optimizer.load_state_dict({"state": opt_state, "param_groups": info["optimizer"]["param_groups"]})
    if tr.scheduler is not None and info.get("scheduler") is not None:
        tr.scheduler.load_state_dict(info["scheduler"])
    if tr.grad_scaler is not None and info.get("grad_scaler") is not None:
        tr.grad_scaler.load_state_dict(info["grad_scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    tr.shuffle.set_state(tensors["rng.shuffle"])
    cuda = group("rng.cuda.")
    if cuda and torch.cuda.is_available() and tr.device.type == "cuda":
        torch.cuda.set_rng_state_all([cuda[str(i)] for i in range(len(cuda))])
    npr = info["rng"]["numpy"]
    keys = tensors["rng.numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((npr["kind"], keys, npr["pos"], npr["has_gauss"], npr["gauss"]))
    pyr = info["rng"]["python"]
    random.setstate((pyr["version"], tuple(pyr["internal"]), pyr["gauss"]))
    t = info["trainer"]
    tr.state = TrainState(
        epoch=int(info["epoch"]),
        best_val=float(t["best_val"]),
        best_epoch=int(t["best_epoch"]),
        bad_epochs=int(t["bad_epochs"]),
        history=list(t["history"]),
        best_weights={k: v.to(tr.device) for k, v in best.items()} or None,
        stopped_early=bool(t["stopped_early"]),
        refit_epoch=None if t.get("refit_epoch") is None else int(t["refit_epoch"]),
    )
