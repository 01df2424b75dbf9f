"""Backends on transformers' generate(): a VLM (Qwen2-VL family) reading page images, and a text LLM reading OCR
text. Both decode under the schema's grammar (xgrammar) and keep the raw logits for per-field confidence."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from tasks.models import bundled
from tasks.models.devices import torch_device, torch_dtype
from tasks.models.generation.base import Generation, GenerationRequest, GeneratorSpec
from tasks.models.generation.constrained import JsonConstraint, token_scores
from tasks.models.generation.gguf import packaged_gguf

logger = logging.getLogger(__name__)


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
    return str(_converted_checkpoint(name, packaged_gguf(name, cache_dir), cache_dir))


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
