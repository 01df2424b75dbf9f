"""Two workers' first OpenVINO calls while another thread imports the embedder's libraries: the run hung forever
once (tasks/preprocess/openvino_session.py `_first_array_views` says why). Each trial is a fresh process, since the
hang can only happen at a process's first use; busy processes on every core make the unlucky interleaving likelier.
Without the fix, measured here: 3 of 9 such trials hung, and one run of this test's 4 trials passed; it is a race,
so this test catches its return often, not always. With the fix the hang cannot happen (0 of 22 trials)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.defaults import usable_cores

REPO_ROOT = Path(__file__).resolve().parents[2]
TRIALS = 6

FIRST_CALLS = textwrap.dedent(
    """
    import threading
    import numpy as np
    from tasks.preprocess import ocr
    from tasks.preprocess.openvino_session import OpenVinoSession

    session = OpenVinoSession(ocr._rapidocr_models() / ocr.DETECTOR_MODEL, 1, "auto", 4, 2)
    page = np.zeros((1, 3, 32, 32), np.float32)
    start = threading.Barrier(3)

    def read() -> None:
        start.wait()
        session(page)

    def load_embedder_libraries() -> None:
        start.wait()
        import timm, torch  # noqa: F401

    threads = [threading.Thread(target=f, daemon=True) for f in (read, read, load_embedder_libraries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print("finished", flush=True)
    """
)


@pytest.fixture
def busy_cores() -> Iterator[None]:
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(usable_cores())]
    yield
    for burner in burners:
        burner.kill()
        burner.wait()


@pytest.mark.usefixtures("busy_cores")
def test_first_calls_beside_an_import_finish() -> None:
    for trial in range(TRIALS):
        try:
            done = subprocess.run(
                [sys.executable, "-c", FIRST_CALLS], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"trial {trial + 1}: the first OpenVINO calls hung")
        assert done.returncode == 0 and "finished" in done.stdout, done.stderr[-2000:]
