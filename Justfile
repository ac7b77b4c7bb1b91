# Developer tasks (https://github.com/casey/just). CI runs .ci/run: the README's test command, with `lint` before the tests.

test:
    python -m pytest

lint:
    ruff format --check lstmcli tests benchmarks
    ruff check lstmcli tests benchmarks
    mypy
    lint-imports

fix:
    ruff format lstmcli tests benchmarks
    ruff check --fix lstmcli tests benchmarks
