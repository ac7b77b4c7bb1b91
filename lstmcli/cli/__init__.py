"""The ``lstm`` command line: parse, call one command, render, map errors to exit codes."""

from lstmcli.cli.app import app

__all__ = ["app"]
