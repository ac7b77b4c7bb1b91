"""Figures render after matplotlib was warmed up on a side thread."""

from __future__ import annotations

from pathlib import Path

from lstmcli import plots


def test_plot_after_background_warm_up(tmp_path: Path) -> None:
    plots.preload()
    plots.preload()  # idempotent
    history = [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "val_loss": 1.1 / (i + 1)} for i in range(5)]
    (tmp_path / "loss.png").write_bytes(plots.loss_curve(history, 3))
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
