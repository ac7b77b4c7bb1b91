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


def test_many_series_are_drawn_as_the_first_panels_with_a_note() -> None:
    from types import SimpleNamespace

    items = [SimpleNamespace(targets=["y"], series=f"s{k}") for k in range(20)]
    pairs, note = plots._panels(items)
    assert len(pairs) == plots.MAX_PANELS and pairs[-1] == (items[plots.MAX_PANELS - 1], 0)
    assert note == f" (the first {plots.MAX_PANELS} of 20 series; --series draws any one)"
    few, none = plots._panels(items[:3])
    assert len(few) == 3 and none == ""


def test_loss_axis_has_plain_labels_whatever_the_range() -> None:
    plt = plots._pyplot()
    for low, high in ((0.025, 0.4), (1e-4, 1.0), (0.002, 0.04)):
        fig, ax = plt.subplots()
        ax.plot([1, 2], [low, high])
        ax.set_yscale("log")
        plots._plain_log_ticks(ax, [low, high])
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_yticklabels() if low <= t.get_position()[1] <= high and t.get_text()]
        plt.close(fig)
        assert 3 <= len(labels) <= 8, (low, high, labels)
        assert all("10^" not in x and "times" not in x for x in labels)


def test_tune_plot_draws_a_study_with_no_finished_trial_and_one_with_importances() -> None:
    empty = plots.tune_plot([0], [None], ["waiting"], None, "s")
    full = plots.tune_plot([0, 1, 2], [2.0, None, 1.5], ["complete", "pruned", "complete"], {"model.m": 0.7}, "s")
    assert empty[:8] == full[:8] == b"\x89PNG\r\n\x1a\n"
