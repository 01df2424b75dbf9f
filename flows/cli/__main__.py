"""`python -m flows.cli`: the `docflow` command."""

from flows.cli.launch import main

main()
