from lstmcli.cli import app

app(prog_name="lstm")
