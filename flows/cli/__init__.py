"""The `docflow` command line (main.py: the app and the run commands; a module per command group). The only
place, with deployment entry points, that reads the environment."""
