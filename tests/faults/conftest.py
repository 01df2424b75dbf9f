"""The fault suite shares the integration fixtures (the `configure` helper; real Prefect, Postgres and SeaweedFS
come from tests/conftest.py)."""

from tests.integration.conftest import Configure, configure

__all__ = ["Configure", "configure"]
