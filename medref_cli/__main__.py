from medref_cli.cli.main import run

run()
