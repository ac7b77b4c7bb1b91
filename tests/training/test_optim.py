"""lstmcli.training.optim is torch.optim's Adam/AdamW and schedules without torch._dynamo: same numbers."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lstmcli.config import load_config
from lstmcli.model.forecaster import LSTMForecaster
from lstmcli.training.optim import Adam, Cosine, Plateau, _has_fused_kernel, make_optimizer


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.LSTM(3, 8, 2, batch_first=True))


def _train(opt_of, steps: int = 6) -> tuple[dict[str, torch.Tensor], object]:
    model = _model()
    opt = opt_of(model.parameters())
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(4, 5, 3, generator=g)
        opt.zero_grad()
        model(x)[0].pow(2).mean().backward()
        opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}, opt


@pytest.mark.parametrize("decoupled", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_updates_equal_torch_optim_bit_for_bit(decoupled: bool, fused: bool) -> None:
    if fused and not _has_fused_kernel(torch.device("cpu")):
        pytest.skip("this torch has no fused Adam kernel for the CPU")
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    theirs, _ = _train(lambda p: cls(p, lr=0.01, weight_decay=0.1, fused=fused, foreach=False if not fused else None))
    ours, opt = _train(lambda p: Adam(p, lr=0.01, weight_decay=0.1, decoupled=decoupled, fused=fused))
    assert opt.fused is fused
    for name, value in theirs.items():
        assert torch.equal(value, ours[name]), name


def test_state_dict_round_trips_and_continues_exactly() -> None:
    model = _model()
    x = torch.randn(4, 5, 3)

    def step(opt: Adam) -> None:
        opt.zero_grad()
        model(x)[0].pow(2).mean().backward()
        opt.step()

    opt = Adam(model.parameters(), lr=0.01)
    step(opt)
    saved = opt.state_dict()
    assert sorted(saved["state"]) == list(range(len(list(model.parameters()))))
    assert float(saved["state"][0]["step"]) == 1.0
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = {i: {k: v.clone() for k, v in s.items()} for i, s in saved["state"].items()}
    step(opt)
    after = {k: v.clone() for k, v in model.state_dict().items()}

    model.load_state_dict(weights)
    again = Adam(model.parameters(), lr=0.5)
    again.load_state_dict({"state": moments, "param_groups": saved["param_groups"]})
    assert again.param_groups[0]["lr"] == 0.01  # the saved learning rate wins
    step(again)
    for k, v in model.state_dict().items():
        assert torch.equal(v, after[k]), k


def test_loads_a_torch_optim_state_dict() -> None:
    # checkpoints written before lstmcli.training.optim hold torch.optim's layout
    _, theirs = _train(lambda p: torch.optim.AdamW(p, lr=0.01, fused=True))
    opt = Adam(_model().parameters(), lr=0.01)
    opt.load_state_dict(theirs.state_dict())
    assert all(float(s["step"]) == 6 for s in opt.state.values())


def test_a_state_dict_that_does_not_fit_is_refused() -> None:
    _, opt = _train(lambda p: Adam(p, lr=0.01), steps=1)
    saved = opt.state_dict()
    small = Adam(torch.nn.LSTM(3, 4, 2).parameters(), lr=0.01)
    with pytest.raises(ValueError, match="shape"):
        small.load_state_dict(saved)
    fewer = Adam(torch.nn.Linear(3, 4).parameters(), lr=0.01)
    with pytest.raises(ValueError, match="sizes"):
        fewer.load_state_dict(saved)


def test_plateau_follows_reduce_lr_on_plateau() -> None:
    losses = [1.0, 0.9, 0.9, 0.95, 0.9, 0.91, 0.89999, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6] + [0.6] * 80
    ours_opt = Adam(torch.nn.Linear(2, 2).parameters(), lr=0.003)
    ours = Plateau(ours_opt, factor=0.5, patience=2)
    theirs_opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.003)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs_opt, factor=0.5, patience=2)
    lrs = []
    for loss in losses:
        ours.step(loss)
        theirs.step(loss)
        lrs.append(ours_opt.param_groups[0]["lr"])
        assert lrs[-1] == theirs_opt.param_groups[0]["lr"]
        assert (ours.best, ours.num_bad_epochs) == (theirs.best, theirs.num_bad_epochs)
    assert lrs[0] == 0.003 and lrs[-1] < 2e-8 and lrs[-1] == lrs[-10]  # halved, then held by the eps rule


def test_cosine_follows_cosine_annealing() -> None:
    epochs = 30
    ours_opt = Adam(torch.nn.Linear(2, 2).parameters(), lr=0.003)
    ours = Cosine(ours_opt, epochs)
    theirs_opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.003)
    theirs = torch.optim.lr_scheduler.CosineAnnealingLR(theirs_opt, T_max=epochs, eta_min=0.003 * 0.01)
    for _ in range(epochs):
        theirs_opt.step()  # no gradients: only tells the scheduler the optimizer ran first
        ours.step(0.0)
        theirs.step()
        assert math.isclose(ours_opt.param_groups[0]["lr"], theirs_opt.param_groups[0]["lr"], rel_tol=1e-12)
    assert ours_opt.param_groups[0]["lr"] == pytest.approx(0.003 * 0.01, rel=1e-12)
    resumed = Cosine(Adam(torch.nn.Linear(2, 2).parameters(), lr=0.003), epochs)
    resumed.load_state_dict(ours.state_dict())
    assert resumed.last_epoch == epochs


def test_training_never_imports_torch_dynamo(tmp_path) -> None:
    # the point of this module: building and stepping the optimizer leaves torch._dynamo unloaded
    code = (
        "import sys, torch\n"
        "from lstmcli.training.optim import Adam\n"
        "m = torch.nn.LSTM(2, 4)\n"
        "opt = Adam(m.parameters(), lr=0.1)\n"
        "m(torch.randn(3, 1, 2))[0].sum().backward()\n"
        "torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)\n"
        "opt.step()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "False"


def test_grad_scaler_steps_equal_torch_optim_and_skip_on_inf() -> None:
    # fp16 training hands the fused kernel the inf flag (no host read per step); a step with an
    # inf gradient changes nothing and does not count, exactly as with torch.optim's fused AdamW
    if not _has_fused_kernel(torch.device("cpu")):
        pytest.skip("this torch has no fused Adam kernel for the CPU")

    def run(opt_of) -> tuple[dict[str, torch.Tensor], list[float]]:
        model = _model()
        opt = opt_of(model.parameters())
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
        g = torch.Generator().manual_seed(1)
        for i in range(5):
            opt.zero_grad()
            scaler.scale(model(torch.randn(4, 5, 3, generator=g))[0].pow(2).mean()).backward()
            if i == 2:
                next(model.parameters()).grad[0, 0] = float("inf")
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
        steps = [float(s["step"]) for s in opt.state.values()]
        return {k: v.clone() for k, v in model.state_dict().items()}, steps

    theirs, their_steps = run(lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1, fused=True))
    ours, our_steps = run(lambda p: Adam(p, lr=0.01, weight_decay=0.1))
    assert our_steps == their_steps == [4.0] * len(our_steps)  # the inf step was skipped
    for name, value in theirs.items():
        assert torch.equal(value, ours[name]), name


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda sd: sd["state"][0].update(exp_avg=[0.0]), "lacks the tensor"),
        (lambda sd: sd["state"].update({-1: sd["state"][0]}), "does not exist"),
        (lambda sd: sd["state"][0].pop("step"), "lacks the tensor"),
    ],
)
def test_a_hand_made_state_is_refused_in_one_line(edit, needle: str) -> None:
    _, opt = _train(lambda p: Adam(p, lr=0.01), steps=1)
    saved = opt.state_dict()
    edit(saved)
    with pytest.raises(ValueError, match=needle):
        Adam(_model().parameters(), lr=0.01).load_state_dict(saved)


def test_optimizer_is_fused_on_cpu_when_torch_has_it(tiny_config: Path) -> None:
    cfg = load_config(tiny_config)
    opt = make_optimizer(LSTMForecaster.from_config(cfg), cfg.train)
    assert opt.decoupled  # adamw, the default
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    if (major, minor) >= (2, 4):
        assert opt.fused is True
