"""The command-line options of `vllm serve` for the release infra/compose.yaml pins, stored as a small text file so
the tests check the compose file's and the GPU bench's flags against vLLM's own parser without installing vLLM
(hundreds of MB, its own torch). vLLM renames flags between releases (0.33 has no --guided-decoding-backend: the
structured-outputs backend is --structured-outputs-config.backend), which a hand-written list would not notice.

Regenerate it with a Python that has that vLLM installed (no GPU needed: the parser runs on a stand-in platform):

    python tests/support/vllm_options.py > tests/support/vllm-serve-options.txt
"""

from __future__ import annotations

import importlib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPTIONS_FILE = Path(__file__).with_name("vllm-serve-options.txt")


@dataclass(frozen=True)
class ServeOptions:
    version: str
    options: frozenset[str]  # every option string `vllm serve` accepts (--max-model-len, -tp...)
    structured_outputs_backends: frozenset[str]  # the values of --structured-outputs-config.backend


def load(path: Path = OPTIONS_FILE) -> ServeOptions:
    version, backends, options = "", frozenset[str](), set()
    for line in path.read_text().splitlines():
        if line.startswith("# version "):
            version = line.split()[-1]
        elif line.startswith("# structured-outputs backends "):
            backends = frozenset(line.split()[3:])
        elif line and not line.startswith("#"):
            options.add(line)
    return ServeOptions(version, frozenset(options), backends)


def split_command(command: list[str]) -> tuple[list[str], dict[str, str | None]]:
    """A `vllm serve` argument list as its positionals and {option: value} (`--a=b`, `--a b`, or `--flag`: None)."""
    positional: list[str] = []
    options: dict[str, str | None] = {}
    index = 0
    while index < len(command):
        item = command[index]
        if item.startswith("-"):
            name, equals, value = item.partition("=")
            if not equals and index + 1 < len(command) and not command[index + 1].startswith("-"):
                index += 1
                value = command[index]
            options[name] = value if equals or value else None
        else:
            positional.append(item)
        index += 1
    return positional, options


def main() -> None:  # pragma: no cover - run by hand, with vLLM installed
    def module(name: str) -> Any:  # vLLM is not installed here: no types to check against
        return importlib.import_module(name)

    interface = module("vllm.platforms.interface")

    # A stand-in platform, CUDA as far as the parser asks: vLLM's own one needs libcuda even to read options.
    cuda = {"_enum": interface.PlatformEnum.CUDA, "device_name": "cuda", "device_type": "cuda", "dispatch_key": "CUDA"}
    module("vllm.platforms").current_platform = type("StandIn", (interface.Platform,), cuda)()
    structured = module("vllm.config.structured_outputs")
    top = module("vllm.utils.argparse_utils").FlexibleArgumentParser()
    parser = module("vllm.entrypoints.cli.serve").ServeSubcommand().subparser_init(top.add_subparsers())
    options = sorted({o for action in parser._actions for o in action.option_strings})
    print("# The options `vllm serve` accepts, read from its own argument parser by tests/support/vllm_options.py.")
    print(f"# version {module('vllm').__version__}")
    print(f"# structured-outputs backends {' '.join(typing.get_args(structured.StructuredOutputsBackend))}")
    print("\n".join(options))


if __name__ == "__main__":
    main()
