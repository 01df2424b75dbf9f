"""The llama.cpp engine with the real Qwen2.5-Coder-0.5B GGUF as it ships in packages: the schema's grammar holds,
every token carries the model's own log-probability, and a prompt's shared prefix is served from the KV cache."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from schemas.documents import Invoice, Receipt
from schemas.errors import ConfigError
from tasks.extract.extraction import build_prompt
from tasks.models.generation.base import GenerationRequest, GeneratorSpec
from tasks.models.generation.constrained import generation_schema
from tasks.models.generation.registry import load_generator
from tests.support.receipts import RECEIPT_TEXT


def _spec(tmp_path: Path, model: str = "pkg:qwen2.5-coder-0.5b") -> GeneratorSpec:
    return GeneratorSpec("text", model, engine="llama.cpp", cache_dir=tmp_path / "models")


def test_the_answer_follows_each_requests_schema_with_the_chosen_tokens_log_probabilities(tmp_path: Path) -> None:
    generator = load_generator(_spec(tmp_path))
    receipt = generation_schema(Receipt.model_json_schema(), max_string=60, max_items=3)
    invoice = generation_schema(Invoice.model_json_schema(), max_string=60, max_items=3)
    requests = [
        GenerationRequest(build_prompt(Receipt, RECEIPT_TEXT), json.dumps(receipt)),
        GenerationRequest(build_prompt(Invoice, RECEIPT_TEXT), json.dumps(invoice)),
    ]
    outputs = generator.generate(requests, max_new_tokens=400)
    for output, schema in zip(outputs, (receipt, invoice), strict=True):
        assert output.finished
        jsonschema.validate(json.loads(output.text), schema)
        assert output.text == "".join(t.text for t in output.tokens)
        assert output.tokens and all(t.logprob <= 0 for t in output.tokens)
    answer = json.loads(outputs[0].text)
    assert set(answer) == set(receipt["properties"])
    assert answer["merchant_name"] == "SANYU STATIONERY SHOP"  # a real model reads the page
    # Jump-forward: the grammar alone wrote the opening and the keys, which score nothing; the model's own tokens
    # carry their log-probabilities from the raw logits.
    tokens = outputs[0].tokens
    assert tokens[0].forced and tokens[0].text.startswith('{"') and tokens[0].logprob == 0
    assert "merchant_address" in "".join(t.text for t in tokens if t.forced)
    chosen = [t for t in tokens if not t.forced]
    assert len(chosen) < len(tokens) and any(t.logprob < -0.01 for t in chosen)


def test_a_prompt_is_evaluated_only_past_what_the_cache_holds(tmp_path: Path) -> None:
    generator = load_generator(_spec(tmp_path))
    counters = generator.counters  # type: ignore[attr-defined]
    schema = json.dumps(generation_schema(Receipt.model_json_schema(), max_string=60, max_items=3))
    prompt = build_prompt(Receipt, RECEIPT_TEXT)
    (first,) = generator.generate([GenerationRequest(prompt, schema)], max_new_tokens=400)
    evaluated = counters.prefill_tokens
    (again,) = generator.generate([GenerationRequest(prompt, schema)], max_new_tokens=400)
    assert counters.prefill_tokens - evaluated == 1  # the whole prompt was cached: only its last token, for logits
    assert again.text == first.text  # greedy: the cache changes nothing of the answer
    other = build_prompt(Receipt, RECEIPT_TEXT.replace("PAPER CLIP", "STAPLER"))
    before = counters.prefill_tokens
    generator.generate([GenerationRequest(other, schema)], max_new_tokens=400)
    assert 0 < counters.prefill_tokens - before < evaluated / 2  # the schema's instructions came from the cache


def test_requests_are_decoded_together_and_share_the_instructions_in_the_cache(tmp_path: Path) -> None:
    generator = load_generator(_spec(tmp_path))
    counters = generator.counters  # type: ignore[attr-defined]
    schema = json.dumps(generation_schema(Receipt.model_json_schema(), max_string=60, max_items=0))
    items = ("PAPER CLIP", "STAPLER", "ERASER", "RULER", "GLUE STICK")
    prompts = [build_prompt(Receipt, RECEIPT_TEXT.replace("PAPER CLIP", item)) for item in items]
    (alone,) = generator.generate([GenerationRequest(prompts[0], schema)], max_new_tokens=200)
    one_prompt = counters.prefill_tokens
    steps, tokens, prefill = counters.decode_steps, counters.decode_tokens, counters.prefill_tokens
    outputs = generator.generate([GenerationRequest(p, schema) for p in prompts], max_new_tokens=200)
    assert len(outputs) == len(items)  # five requests: a group of four, then one
    for output in outputs:
        assert output.finished
        assert json.loads(output.text)["merchant_name"] == "SANYU STATIONERY SHOP"
    # Four sequences share each decoding step: far fewer steps than chosen tokens.
    assert counters.decode_steps - steps < (counters.decode_tokens - tokens) / 2
    # Every prompt after the first took the instructions and the page's head from the cache.
    assert counters.prefill_tokens - prefill < one_prompt * 2
    assert outputs[0].text == alone.text


def test_llama_cpp_reads_gguf_files_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"llama\.cpp reads a GGUF file"):
        load_generator(_spec(tmp_path, "Qwen/Qwen2.5-0.5B-Instruct"))
