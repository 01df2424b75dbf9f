"""`python -m flows.cli`: the `docflow` command."""

from flows.cli.main import main

main()
