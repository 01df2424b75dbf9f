import socket
import subprocess
import sys

from schemas.settings import load_settings
from tasks.run.concurrency import model_limit_name

HOST = socket.gethostname().split(".")[0].lower()


def test_the_limit_is_named_after_the_device_and_its_machine() -> None:
    assert model_limit_name(load_settings(model_device="cpu")) == f"docflow-cpu-{HOST}"
    assert model_limit_name(load_settings(model_device="cuda")) == f"docflow-gpu-0-{HOST}"
    assert model_limit_name(load_settings(model_concurrency_limit="shared-a100")) == "shared-a100"


def test_naming_it_does_not_import_torch() -> None:
    """In a fresh interpreter: a transcription-only run must not pay torch's import to name its limit."""
    code = (
        "import sys; from schemas.settings import load_settings; from tasks.run.concurrency import model_limit_name; "
        "print(model_limit_name(load_settings()), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] in (f"docflow-cpu-{HOST}", f"docflow-gpu-0-{HOST}") and out[1] == "False"
