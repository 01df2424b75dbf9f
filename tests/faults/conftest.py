"""The fault suite shares the integration fixtures (real Prefect, Postgres, SeaweedFS, the `configure` helper)."""

from tests.integration.conftest import Configure, configure, prefect_harness

__all__ = ["Configure", "configure", "prefect_harness"]
