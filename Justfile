# Developer tasks (https://github.com/casey/just). CI runs .ci/run, the README's test command.

test:
    python -m pytest

lint:
    ruff check lstmcli tests benchmarks
    mypy

fix:
    ruff check --fix lstmcli tests benchmarks
