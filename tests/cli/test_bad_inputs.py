"""Every bad input: exit 2, one line naming the file and the key/row/column and what was expected,
no traceback, and no existing file touched (every file hashed before and after)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstmcli.cli import app
from tests.conftest import snapshot, write_config, write_csv

runner = CliRunner()


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Path], list[str]]  # writes files into the tmp dir, returns the CLI arguments
    expect: tuple[str, ...]  # all must appear in the one output line


# ---------------------------------------------------------------------------------------------
# Builders


def cfg(**sections: dict) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        write_csv(d / "series.csv")
        return ["train", str(write_config(d / "bad.yaml", **sections)), "-q"]

    return setup


def cfg_text(text: str, *extra: str) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        write_csv(d / "series.csv")
        (d / "bad.yaml").write_text(text)
        return ["train", str(d / "bad.yaml"), "-q", *extra]

    return setup


def fifo(name: str, *args: str) -> Callable[[Path], list[str]]:
    """A named pipe where a file is expected: reading it would block until a writer came."""

    def setup(d: Path) -> list[str]:
        write_csv(d / "series.csv")
        write_config(d / "good.yaml")
        os.mkfifo(d / name)
        return [a.replace("{d}", str(d)) for a in args]

    return setup


def overrides(*items: str) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        write_csv(d / "series.csv")
        args = ["train", str(write_config(d / "good.yaml")), "-q"]
        for item in items:
            args += ["--set", item]
        return args

    return setup


def csv_text(content: str | bytes, **data: object) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        path = d / "series.csv"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return ["train", str(write_config(d / "good.yaml", data=data)), "-q"]

    return setup


GOOD = "date,y\n" + "".join(f"20{i // 12:02d}-{i % 12 + 1:02d}-01,{10 + i % 7}\n" for i in range(80))


def good_with(line_no: int, replacement: str) -> str:
    lines = GOOD.splitlines()
    lines[line_no - 1] = replacement
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("trained")
    write_csv(d / "series.csv")
    config = write_config(d / "c.yaml", train={"epochs": 2})
    result = runner.invoke(app, ["train", str(config), "-q"])
    assert result.exit_code == 0, result.output
    return d / "run"


def run_dir(change: Callable[[Path], None], command: str = "inspect") -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        run = d / "run"
        shutil.copytree(setup.source, run)  # type: ignore[attr-defined]
        change(run)
        return [command, str(run)]

    setup.needs_run = True  # type: ignore[attr-defined]
    return setup


def truncate(run: Path) -> None:
    w = run / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])


def tamper(run: Path) -> None:
    w = run / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0xFF
    w.write_bytes(bytes(data))


def edit_config(run: Path) -> None:
    c = run / "config.yaml"
    c.write_text(c.read_text().replace("m: 8", "m: 16"))


def wrong_shapes(run: Path) -> None:
    # Consistent checksum, wrong architecture: weights of m=4 under a config that says m=8.
    from safetensors.torch import save as weights_bytes

    from lstmcli.fsutil import sha256
    from lstmcli.model.forecaster import LSTMForecaster

    data = weights_bytes(LSTMForecaster(n=1, m=4, layers=2, horizon=3, n_targets=1).state_dict())
    (run / "model.safetensors").write_bytes(data)
    meta = json.loads((run / "meta.json").read_text())
    meta["weights_sha256"] = sha256(data)
    (run / "meta.json").write_text(json.dumps(meta))


def unfinished(run: Path) -> None:
    (run / "metrics.json").unlink()  # an unfinished run whose checkpoint names a file outside it
    (run / "partial" / "checkpoint").mkdir(parents=True)
    (run / "partial" / "config.yaml").write_bytes((run / "config.yaml").read_bytes())
    (run / "partial" / "checkpoint" / "state.json").write_text(
        '{"format": "lstmcli-train-state", "format_version": 1, "tensors": "../model.safetensors"}'
    )


CASES = [
    # --- configs ------------------------------------------------------------------------------
    Case("yaml-malformed", cfg_text("model: [1, 2\ndata: {}\n"), ("bad.yaml", "malformed YAML at line", "column")),
    Case("yaml-tab-indent", cfg_text("model:\n\tn: 1\n"), ("bad.yaml", "malformed YAML at line 2")),
    Case("yaml-empty", cfg_text(""), ("bad.yaml", "config is empty", "model and data")),
    Case("yaml-list", cfg_text("- model\n- data\n"), ("bad.yaml", "expected a mapping", "got a list")),
    Case("unknown-key", cfg(model={"units": 8}), ("bad.yaml", "unknown key 'model.units'")),
    Case(
        "unknown-key-typo",
        cfg(train={"lr_rate": 0.1}),
        ("bad.yaml", "unknown key 'train.lr_rate'", "valid keys in train", "lr"),
    ),
    Case(
        "unknown-section",
        cfg_text("model: {n: 1}\ndata: {path: s.csv, target: y, lookback: 3, horizon: 1}\ntrainer: {}\n"),
        ("bad.yaml", "unknown key 'trainer'"),
    ),
    Case("type-m-string", cfg(model={"m": "big"}), ("bad.yaml", "model.m", "valid integer", "'big'")),
    Case("type-lr-string", cfg(train={"lr": "fast"}), ("bad.yaml", "train.lr", "valid number", "'fast'")),
    Case("type-m-float", cfg(model={"m": 8.5}), ("bad.yaml", "model.m", "integer", "8.5")),
    Case("type-target-number", cfg(data={"target": 3}), ("bad.yaml", "data.target", "valid list")),
    Case("negative-m", cfg(model={"m": -4}), ("bad.yaml", "model.m", "greater than 0", "-4")),
    Case("zero-layers", cfg(model={"layers": 0}), ("bad.yaml", "model.layers", "greater than 0", "0")),
    Case("zero-epochs", cfg(train={"epochs": 0}), ("bad.yaml", "train.epochs", "greater than 0")),
    Case("zero-batch", cfg(train={"batch_size": 0}), ("bad.yaml", "train.batch_size", "greater than 0")),
    Case("negative-lr", cfg(train={"lr": -0.1}), ("bad.yaml", "train.lr", "greater than 0")),
    Case("dropout-1", cfg(model={"dropout": 1.5}), ("bad.yaml", "model.dropout", "less than 1")),
    Case("zero-lookback", cfg(data={"lookback": 0}), ("bad.yaml", "data.lookback", "greater than 0")),
    Case("bad-enum", cfg(train={"optimizer": "sgd"}), ("bad.yaml", "train.optimizer", "'adam' or 'adamw'", "'sgd'")),
    Case("n-mismatch", cfg(model={"n": 2}), ("bad.yaml", "model.n is 2", "1 column(s) (y)", "n must equal")),
    Case("missing-lookback", cfg(data={"lookback": None}), ("bad.yaml", "missing required key 'data.lookback'")),
    Case("split-no-test", cfg(data={"split": {"train": 0.8, "val": 0.2}}), ("bad.yaml", "data.split", "below 1")),
    Case(
        "split-counts-with-train",
        cfg(data={"split": {"train": 0.7, "val": 12, "test": 12}}),
        ("bad.yaml", "data.split", "count split", "drop train"),
    ),
    Case(
        "split-count-with-fraction-val",
        cfg(data={"split": {"val": 0.1, "test": 12}}),
        ("bad.yaml", "data.split", "val must be rows too"),
    ),
    Case(
        "split-val-rows-without-test",
        cfg(data={"split": {"val": 12}}),
        ("bad.yaml", "data.split", "val is a fraction below 1"),
    ),
    Case(
        "split-count-too-long",
        cfg(data={"split": {"val": 40, "test": 40}}),
        ("series.csv", "series too short", "train split 0 row(s)"),
    ),
    Case("column-twice", cfg(model={"n": 2}, data={"features": ["y"]}), ("bad.yaml", "column 'y' is listed twice")),
    Case(
        "lookback-too-long", cfg(data={"lookback": 200}), ("series.csv", "series too short", "80 rows", "lookback 200")
    ),
    Case("horizon-too-long", cfg(data={"horizon": 100}), ("series.csv", "series too short", "horizon 100")),
    Case("season-too-long", cfg(data={"season": 70}), ("series.csv", "data.season 70", "smaller season")),
    Case("config-missing", lambda d: ["train", str(d / "nope.yaml")], ("nope.yaml", "config file not found")),
    Case(
        "config-is-dir",
        lambda d: ["train", str(d / "cfg.yaml")] if not (d / "cfg.yaml").mkdir() else [],
        ("cfg.yaml", "is a directory", "YAML config"),
    ),
    Case(
        "output-dir-is-a-file",
        lambda d: ["train", str(write_config(d / "c.yaml", output={"dir": str(write_csv(d / "series.csv"))})), "-q"],
        ("series.csv", "exists and is not a directory", "output.dir"),
    ),
    Case(
        "output-dir-under-a-file",
        lambda d: [
            "train",
            str(write_config(d / "c.yaml", output={"dir": str(write_csv(d / "series.csv") / "run")})),
            "-q",
        ],
        ("series.csv/run", "cannot create the run directory"),
    ),
    # --- --set overrides ----------------------------------------------------------------------
    Case("set-no-equals", overrides("train.lr"), ("--set 'train.lr'", "expected KEY.PATH=VALUE")),
    Case("set-empty-part", overrides("train..lr=1"), ("--set 'train..lr=1'", "expected KEY.PATH=VALUE")),
    Case("set-bad-yaml", overrides("train.lr=[1"), ("--set 'train.lr=[1'", "not valid YAML")),
    Case(
        "set-through-value",
        overrides("train.epochs.x=1"),
        ("--set 'train.epochs.x=1'", "train.epochs is a value, not a section"),
    ),
    Case("set-value-as-section", overrides("train.lr.x=1"), ("good.yaml", "train.lr", "valid number", "got a mapping")),
    Case("set-unknown-key", overrides("model.mm=3"), ("good.yaml", "unknown key 'model.mm'", "did you mean 'model.m'")),
    Case("set-wrong-type", overrides("train.epochs=many"), ("good.yaml", "train.epochs", "valid integer", "'many'")),
    # --- CSV files ------------------------------------------------------------------------------
    Case(
        "csv-missing",
        lambda d: ["train", str(write_config(d / "good.yaml")), "-q"],
        ("series.csv", "CSV file not found"),
    ),
    Case("csv-empty", csv_text(""), ("series.csv", "file is empty", "header row")),
    Case("csv-header-only", csv_text("date,y\n"), ("series.csv", "header but no data rows")),
    Case(
        "csv-missing-column",
        csv_text(GOOD.replace("date,y", "date,value")),
        ("series.csv", "no column 'y'", "columns are: date, value"),
    ),
    Case(
        "csv-missing-date-column",
        csv_text(GOOD.replace("date,y", "day,y")),
        ("series.csv", "no column 'date'", "columns are: day, y"),
    ),
    Case(
        "csv-non-numeric",
        csv_text(good_with(6, "2000-05-01,abc")),
        ("series.csv", "row 5 (line 6)", "column 'y'", "'abc' is not a number"),
    ),
    Case(
        "csv-comma-decimal",
        csv_text(good_with(6, '2000-05-01,"1,5"')),
        ("series.csv", "row 5 (line 6)", "column 'y'", "'1,5' is not a number"),
    ),
    Case(
        "csv-nan",
        csv_text(good_with(9, "2000-08-01,NaN")),
        ("series.csv", "row 8 (line 9)", "column 'y'", "missing value", "data.missing"),
    ),
    Case(
        "csv-inf",
        csv_text(good_with(9, "2000-08-01,inf")),
        ("series.csv", "row 8 (line 9)", "column 'y'", "not a finite number"),
    ),
    Case(
        "csv-empty-cell",
        csv_text(good_with(12, "2000-11-01,")),
        ("series.csv", "row 11 (line 12)", "column 'y'", "empty cell", "expected a number"),
    ),
    Case(
        "csv-duplicated-date",
        csv_text(good_with(4, "2000-02-01,11")),
        ("series.csv", "row 3 (line 4)", "column 'date'", "repeats", "increasing date order"),
    ),
    Case(
        "csv-unsorted-date",
        csv_text(good_with(4, "1999-12-01,11")),
        ("series.csv", "row 3 (line 4)", "column 'date'", "goes back before", "increasing date order"),
    ),
    Case(
        "csv-bad-date",
        csv_text(good_with(5, "2000-13-45,11")),
        ("series.csv", "row 4 (line 5)", "column 'date'", "not an ISO date"),
    ),
    Case("csv-semicolons", csv_text(GOOD.replace(",", ";")), ("series.csv", "semicolon-separated", "comma-separated")),
    Case("csv-tabs", csv_text(GOOD.replace(",", "\t")), ("series.csv", "tab-separated", "comma-separated")),
    Case("csv-utf16-bom", csv_text(GOOD.encode("utf-16")), ("series.csv", "UTF-16", "save it as UTF-8")),
    Case(
        "csv-not-utf8",
        csv_text(good_with(7, "2000-06-01,1\xb5").encode("latin-1")),
        ("series.csv", "line 7", "not valid UTF-8"),
    ),
    Case(
        "csv-ragged-long",
        csv_text(good_with(10, "2000-09-01,12,13")),
        ("series.csv", "row 9 (line 10)", "3 field(s)", "header has 2"),
    ),
    Case(
        "csv-ragged-short",
        csv_text(good_with(10, "2000-09-01")),
        ("series.csv", "row 9 (line 10)", "1 field(s)", "header has 2"),
    ),
    Case(
        "csv-duplicate-header",
        csv_text(GOOD.replace("date,y", "date,date").replace(",1", ",1", 1)),
        ("series.csv", "column 'date' appears twice"),
    ),
    Case(
        "csv-log-of-zero",
        csv_text(good_with(3, "2000-02-01,0"), transform="log"),
        ("series.csv", "row 2", "column 'y'", "not positive", "transform"),
    ),
    Case(
        "csv-too-short",
        csv_text("date,y\n2000-01-01,1\n2000-02-01,2\n"),
        ("series.csv", "series too short", "lookback 12"),
    ),
    # --- run directories -------------------------------------------------------------------------
    Case("run-missing", lambda d: ["resume", str(d / "nope")], ("nope", "run directory not found")),
    Case(
        "run-no-weights", run_dir(lambda r: (r / "model.safetensors").unlink()), ("run", "model.safetensors is missing")
    ),
    Case("run-no-meta", run_dir(lambda r: (r / "meta.json").unlink()), ("run", "meta.json is missing")),
    Case("run-no-config", run_dir(lambda r: (r / "config.yaml").unlink()), ("run", "config.yaml is missing")),
    Case("run-meta-garbled", run_dir(lambda r: (r / "meta.json").write_text("{oops")), ("meta.json", "not valid JSON")),
    Case(
        "run-truncated-weights",
        run_dir(truncate),
        ("model.safetensors", "checksum recorded in meta.json", "truncated or altered"),
    ),
    Case(
        "run-tampered-weights",
        run_dir(tamper),
        ("model.safetensors", "checksum recorded in meta.json", "truncated or altered"),
    ),
    Case(
        "run-wrong-shapes",
        run_dir(wrong_shapes),
        ("model.safetensors", "tensor 'lstm.weight_ih_l0' has shape [16, 1]", "expects [32, 1]"),
    ),
    Case(
        "run-config-edited",
        run_dir(edit_config),
        ("config.yaml", "edited after training", "checksum differs from meta.json"),
    ),
    Case(
        "run-pickle-present",
        run_dir(lambda r: (r / "model.pt").write_bytes(b"\x80\x04K\x01.")),
        ("model.pt", "looks like a pickle", "never unpickles"),
    ),
    Case("resume-finished", run_dir(lambda r: None, "resume"), ("run", "already finished", "metrics.json")),
    Case(
        "resume-bad-pointer",
        run_dir(unfinished, "resume"),
        ("state.json", "key 'tensors' must name a .safetensors file"),
    ),
    # --- inputs that could hang a command or fill the memory -------------------------------------
    Case(
        "yaml-alias-bomb",
        cfg_text(
            "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        ),
        ("bad.yaml", "line 2", "aliases (*a) are not allowed"),
    ),
    Case("yaml-self-alias", cfg_text("a: &a [*a]\n"), ("bad.yaml", "aliases (*a) are not allowed")),
    Case(
        "yaml-deep-nesting",
        cfg_text("model: " + "[" * 100_000 + "]" * 100_000 + "\n"),
        ("bad.yaml", "line 1", "nested more than 32 levels"),
    ),
    Case(
        "yaml-huge-list",
        cfg_text("x:\n" + "- 1\n" * 400_000),
        ("bad.yaml", "1,600,003 bytes", "1,048,576 bytes at most"),
    ),
    Case(
        "yaml-duplicate-key",
        cfg_text("model: {n: 1, m: 8}\nmodel: {n: 2}\n"),
        ("bad.yaml", "line 2, column 1", "key 'model' appears twice", "first on line 1"),
    ),
    Case(
        "yaml-duplicate-nested-key",
        cfg_text("model:\n  m: 8\n  m: 16\n"),
        ("bad.yaml", "line 3", "key 'm' appears twice"),
    ),
    Case("yaml-huge-integer", cfg_text("model: {m: " + "9" * 5000 + "}\n"), ("bad.yaml", "more than 4,300 digits")),
    Case(
        "config-fifo",
        fifo("pipe.yaml", "train", "{d}/pipe.yaml"),
        ("pipe.yaml", "is a pipe (FIFO)", "regular YAML config file"),
    ),
    Case(
        "config-dev-zero",
        lambda d: ["train", "/dev/zero"],
        ("/dev/zero", "character device", "regular YAML config file"),
    ),
    Case(
        "csv-fifo",
        fifo("pipe.csv", "train", "{d}/good.yaml", "--set", "data.path={d}/pipe.csv"),
        ("pipe.csv", "is a pipe (FIFO)", "regular CSV file"),
    ),
    Case("csv-dev-zero", overrides("data.path=/dev/zero"), ("/dev/zero", "character device", "regular CSV file")),
    Case("csv-dev-stdin", overrides("data.path=/dev/stdin"), ("/dev/stdin", "expected a regular CSV file")),
    Case(
        "csv-line-over-16-mib",
        csv_text(good_with(5, "2000-04-01," + "1" * (17 << 20))),
        ("series.csv", "line 5 is longer than 16 MiB"),
    ),
    Case(
        "csv-nul-byte",
        csv_text(good_with(5, "2000-04-01,1\0")),
        ("series.csv", "row 4 (line 5)", "column 'y'", "is not a number"),
    ),
    Case(
        "csv-time-zone-offset",
        csv_text(GOOD.replace("-01,", "-01T00:00:00+02:00,")),
        ("series.csv", "row 1 (line 2)", "column 'date'", "time-zone offset (+02:00)"),
    ),
    Case(
        "csv-utc-z",
        csv_text(GOOD.replace("-01,", "-01T00:00Z,")),
        ("series.csv", "row 1 (line 2)", "time-zone offset (Z)"),
    ),
    Case(
        "csv-value-near-1e200",
        csv_text(good_with(20, "2001-07-01,1e200")),
        ("series.csv", "row 19", "column 'y'", "too large", "rescale"),
    ),
    Case(
        "model-too-many-layers",
        overrides("model.layers=1000000"),
        ("good.yaml", "model.layers", "less than or equal to 64"),
    ),
    Case(
        "model-too-many-parameters", overrides("model.m=100000"), ("good.yaml", "parameters", "at most 1,000,000,000")
    ),
    Case(
        "train-threads-beyond-the-cores", overrides("train.threads=100000"), ("train.threads is 100000", "CPU core(s)")
    ),
    Case(
        "run-dir-with-a-foreign-lock-only",
        lambda d: (
            ["train", str(write_config(d / "c.yaml", output={"dir": str(d / "out")})), "-q", "--overwrite"]
            if write_csv(d / "series.csv")
            and (d / "out").mkdir() is None
            and (d / "out" / ".lock").write_text("not lstm's")
            else []
        ),
        ("out", "not an lstm run directory", "holds .lock"),
    ),
    # --- CLI arguments -----------------------------------------------------------------------------
    Case(
        "cli-unknown-option",
        lambda d: ["train", "x.yaml", "--epochz", "3"],
        ("No such option: --epochz", "lstm train --help"),
    ),
    Case("cli-missing-argument", lambda d: ["train"], ("Missing argument", "lstm train --help")),
    Case("cli-unknown-command", lambda d: ["trian"], ("No such command 'trian'", "lstm --help")),
    Case("cli-resume-and-overwrite", overrides(), ("--resume", "--overwrite", "pass one")),
    Case("cli-set-on-a-run", run_dir(lambda r: None), ("--set applies to configs", "lstm inspect --help")),
]

# Cases whose setup needs a little more than a builder.
CASES.append(
    Case(
        "config-not-utf8",
        lambda d: ["train", str(d / "bad.yaml")] if (d / "bad.yaml").write_bytes(b"model: {n: 1}\n# caf\xe9\n") else [],
        ("bad.yaml", "line 2 is not valid UTF-8"),
    )
)
EXTRA_ARGS = {"cli-resume-and-overwrite": ["--resume", "--overwrite"], "cli-set-on-a-run": ["--set", "model.m=3"]}


def test_at_least_30_cases_across_every_kind() -> None:
    assert len(CASES) >= 30
    kinds = {c.id.split("-")[0] for c in CASES}
    assert {"yaml", "csv", "run", "cli", "set"} <= kinds


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_exit_2_and_changes_nothing(
    case: Case, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if getattr(case.setup, "needs_run", False):
        case.setup.source = request.getfixturevalue("trained_run")  # type: ignore[attr-defined]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # runs/ would land here if anything wrote a default run directory
    args = case.setup(work) + EXTRA_ARGS.get(case.id, [])
    before = snapshot(work)
    result = runner.invoke(app, args)
    after = snapshot(work)
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    for text in case.expect:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert after == before, "files changed"


def test_an_excel_utf8_bom_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "series.csv").write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    result = runner.invoke(app, ["config", str(write_config(tmp_path / "c.yaml"))])
    assert result.exit_code == 0
    from lstmcli.config import load_config
    from lstmcli.data.dataset import load_dataset

    ds = load_dataset(load_config(tmp_path / "c.yaml").data)
    assert ds.table.n_rows == 80


def test_a_shipped_config_is_not_touched_by_a_bad_override(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["train", str(config), "--set", "model.m=-1"])
    assert result.exit_code == 2
    assert snapshot(tmp_path) == before  # the config unchanged, no run directory made
