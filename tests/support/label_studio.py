"""docflow's Label Studio client plus what a test does in the reviewer's place: submit an annotation, and fetch the
files Label Studio serves itself with the client's own credentials."""

from __future__ import annotations

from typing import Any

from tasks.review.label_studio import LabelStudio


class ReviewerClient(LabelStudio):
    def __enter__(self) -> ReviewerClient:
        return self

    def annotate(self, task_id: int, results: list[dict[str, Any]]) -> int:
        """Submit an annotation, as a reviewer does in the UI."""
        return int(self._call("POST", f"/api/tasks/{task_id}/annotations", json={"result": results})["id"])

    def access_header(self) -> dict[str, str]:
        """The header that authenticates a GET of Label Studio's own URLs (local files): the token exchanged for an
        access token, as the client sends it."""
        return {"Authorization": self._http.headers["Authorization"]}
