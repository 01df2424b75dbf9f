"""Prefect's temporary API server, the child process a `docflow` command starts for its runs (flows/lifecycle.py).

Run as a script by path (`python -P flows/prefect_server.py PORT`: nothing of docflow's is imported, and neither the
script's folder nor the working directory is on the module path), so the command can start it before importing
Prefect itself. It reads Prefect's settings as any Prefect process does (environment, profile, prefect.toml) and
exits at once, with status 0, when they name an API server or turn the temporary one off. Otherwise it is the
server Prefect would start itself (`SubprocessASGIServer` in `prefect.server.api.server`): uvicorn over the server's
app factory on 127.0.0.1:PORT, exit status 3 when the port is taken.
"""

from __future__ import annotations

import sys


def temporary_server_wanted() -> bool:
    """Whether Prefect's settings want a temporary server: no PREFECT_API_URL, ephemeral mode on."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    return not settings.api.url and settings.server.ephemeral.enabled


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(
        "prefect.server.api.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="on",
    )


if __name__ == "__main__":
    if temporary_server_wanted():
        serve(int(sys.argv[1]))
