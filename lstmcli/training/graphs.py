"""The whole training step (forward, backward, clipping, optimizer) captured as one CUDA graph.

Small LSTMs are launch-bound on a GPU: an eager step is a few hundred kernel launches, a few
milliseconds of host time, whatever the model size. Replaying one captured graph removes that
(shared/FINDINGS.md: 3.3 ms -> 0.36 ms per step on an H100). A graph needs static shapes and
static memory, so a batch's window origins are copied into one index buffer on the device and
the windows are gathered inside the graph; only full batches replay it (the trainer runs a
shorter last batch eagerly, with the same parameters and optimizer).

Capturing needs a few real warm-up steps first; they are undone afterwards (parameters and
optimizer state copied back), so the graph path continues exactly where the eager path stood.
On the CPU the same object runs the same step eagerly (``capture=False``), which is how its
bookkeeping is tested without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lstmcli.training.optim import Adam

WARMUP_STEPS = 3


class StaticStep:
    """One training step over a fixed number of windows whose origins sit in ``self.origins``."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Adam,
        step: Callable[[torch.Tensor], torch.Tensor],
        batch_size: int,
        warmup_origins: torch.Tensor,
        capture: bool,
    ) -> None:
        """``step(origins)`` runs forward, backward, clipping and ``optimizer.step()`` and returns
        the batch's summed squared error (a 0-d tensor); ``warmup_origins`` is any full batch."""
        self.model, self.optimizer, self.step = model, optimizer, step
        self.origins = torch.zeros(batch_size, dtype=torch.long, device=warmup_origins.device)  # static input
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: torch.Tensor | None = None
        if capture:
            self._capture(warmup_origins)

    @property
    def batch_size(self) -> int:
        return self.origins.numel()

    def __call__(self, origins: torch.Tensor) -> torch.Tensor:
        """Run the step for ``origins`` (exactly ``batch_size`` of them); returns the summed squared
        error, which the next call overwrites: accumulate it before calling again."""
        self.origins.copy_(origins, non_blocking=True)
        if self.graph is None:
            self.optimizer.zero_grad(set_to_none=True)
            return self.step(self.origins)
        self.graph.replay()
        assert self.out is not None
        return self.out

    def _capture(self, warmup_origins: torch.Tensor) -> None:
        saved = _Snapshot(self.model, self.optimizer)
        self.origins.copy_(warmup_origins)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up off the default stream, as capture requires
            for _ in range(WARMUP_STEPS):
                self.optimizer.zero_grad(set_to_none=True)
                self.step(self.origins)
        torch.cuda.current_stream().wait_stream(side)
        self.optimizer.zero_grad(set_to_none=True)  # backward inside the graph allocates .grad from its pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.out = self.step(self.origins)
        saved.restore()  # undo the warm-up steps: the graph starts from the eager state
        self.graph = graph


class _Snapshot:
    """Copies of the parameters and optimizer state, restored in place (graphs keep addresses)."""

    def __init__(self, model: nn.Module, optimizer: Adam) -> None:
        self.optimizer = optimizer
        self.params = [(p, p.detach().clone()) for p in model.parameters()]
        self.state = {
            id(p): {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
            for p, s in optimizer.state.items()
        }

    @torch.no_grad()
    def restore(self) -> None:
        for p, saved in self.params:
            p.copy_(saved)
        for param, state in self.optimizer.state.items():
            before = self.state.get(id(param))
            for key, value in state.items():
                if not isinstance(value, torch.Tensor):
                    continue
                if before is None:
                    value.zero_()  # state the warm-up created: a fresh optimizer has none (step 0)
                else:
                    value.copy_(before[key])
