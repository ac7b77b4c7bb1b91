"""The default CPU thread count: what the model can use, within the cores and quota the process has."""

from __future__ import annotations

import os

import pytest

from lstmcli.training import threads
from lstmcli.training.threads import choose_threads, work_per_step


@pytest.fixture
def eight_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(threads, "cpu_quota", lambda: None)


def test_a_small_model_trains_on_one_thread(eight_cores: None) -> None:
    work = work_per_step(n=1, m=64, layers=2, batch=64)  # the CO2 config's: 3.2M
    assert work == 64 * (4 * 64 * 65 + 4 * 64 * 128)
    choice = choose_threads(None, work)
    assert choice.threads == 1 and "gain nothing" in choice.why


def test_a_large_model_uses_the_cores_within_the_quota_and_the_ranks_share_them(
    eight_cores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = work_per_step(n=8, m=512, layers=2, batch=256)
    assert choose_threads(None, big).threads == 8
    assert choose_threads(None, big, processes=2).threads == 4
    monkeypatch.setattr(threads, "cpu_quota", lambda: 2.5)  # a container allowed 2.5 cores
    assert choose_threads(None, big).threads == 2


def test_train_threads_overrides_the_choice(eight_cores: None) -> None:
    assert choose_threads(3, 1).threads == 3 and choose_threads(3, 1).why == "train.threads"


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_cli_makes_waiting_threads_passive_unless_told_otherwise(given: str | None, expected: str) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, lstmcli.cli.app; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == expected


@pytest.mark.parametrize(("threads", "expected"), [(None, "PASSIVE"), (2, "unset")])
def test_a_run_with_train_threads_keeps_openmps_own_waiting(threads: int | None, expected: str) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = (
        "import os; from lstmcli.training import threads; threads.passive_waiting(); "
        f"threads.pinned_threads({threads}); print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == expected
