"""Schema-constrained decoding for transformers' generate(), through xgrammar.

xgrammar compiles a JSON Schema into a grammar over the model's own vocabulary once, and masks every step's
logits so the model can only write JSON that parses against the schema: even a random model yields valid JSON."""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from typing import Any

# JSON Schema keywords whose value maps names (of properties, definitions) to schemas.
_NAME_TO_SCHEMA = {"properties", "$defs", "definitions", "patternProperties"}


def generation_schema(schema: dict[str, Any], max_string: int = 300, max_items: int = 100) -> dict[str, Any]:
    """The JSON Schema the model must follow: every property required (null allowed where the pydantic model
    allows it), no defaults, so the model states each field instead of silently omitting it; strings and lists
    bounded, so even a model that never wants to stop must close its JSON. Values are copied as printed: dates
    and amounts are strings (the schema's own validators parse them), since converting formats is where small
    models go wrong. With `max_items` 0, list fields are left out (every token costs time on a CPU)."""
    out = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for value in node:
                visit(value)
            return
        if not isinstance(node, dict):
            return
        node.pop("default", None)
        node.pop("title", None)  # pydantic's display title of a schema, not a property named "title"
        if node.get("type") == "object" and "properties" in node:
            if max_items == 0:
                node["properties"] = {k: v for k, v in node["properties"].items() if v.get("type") != "array"}
            node["required"] = list(node["properties"])
        if isinstance(node.get("anyOf"), list) and any(o.get("type") == "string" for o in node["anyOf"]):
            node["anyOf"] = [o for o in node["anyOf"] if o.get("type") != "number"]
        if node.get("type") == "string":
            node.pop("format", None)
            node["maxLength"] = min(node.get("maxLength", max_string), max_string)
            if "pattern" in node:  # xgrammar takes the pattern alone (it bounds the length itself)
                del node["maxLength"]
        if node.get("type") == "array":
            node["maxItems"] = max_items
        for key, value in node.items():
            if key in _NAME_TO_SCHEMA and isinstance(value, dict):  # keys here are names, values schemas
                for schema_node in value.values():
                    visit(schema_node)
            else:
                visit(value)

    visit(out)
    return out


@dataclass
class TokenScore:
    text: str
    logprob: float
    forced: bool = False  # written by the grammar alone (jump-forward): the model chose nothing, so it scores nothing


class JsonConstraint:
    """Compiled grammars for one tokenizer, cached by schema."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self._compiler = xgr.GrammarCompiler(info)
        self._compiled: dict[str, Any] = {}
        self._lock = threading.Lock()

    def compiled(self, schema_json: str) -> Any:
        with self._lock:
            if schema_json not in self._compiled:
                # Compact JSON: free whitespace would let a weak model pad its answer with blanks forever.
                self._compiled[schema_json] = self._compiler.compile_json_schema(schema_json, any_whitespace=False)
            return self._compiled[schema_json]

    def logits_processor(self, schema_jsons: list[str]) -> Any:
        """A fresh processor for one generate() call (it keeps per-sequence matcher state)."""
        return self._xgr.contrib.hf.LogitsProcessor([self.compiled(s) for s in schema_jsons])


def schema_json(schema: dict[str, Any], max_string: int = 300, max_items: int = 100) -> str:
    return json.dumps(generation_schema(schema, max_string, max_items))  # field order kept: it guides the model


def token_scores(tokenizer: Any, token_ids: list[int], logits: list[Any], row: int) -> list[TokenScore]:
    """Each generated token with the model's own log-probability for it (raw logits, before the grammar mask),
    stopping at the first special token."""
    import torch

    scores = []
    special = set(tokenizer.all_special_ids)
    for step, token_id in enumerate(token_ids):
        if token_id in special:
            break
        logprob = torch.log_softmax(logits[step][row].float(), dim=-1)[token_id].item()
        scores.append(TokenScore(tokenizer.decode([token_id]), logprob))
    return scores
