"""llama.cpp in process (llama-cpp-python): a GGUF text LLM as it ships (4-bit weights: no conversion, no fp32
copy), on every core this process may use.

Decoding is greedy under the same xgrammar grammar as the transformers backends (compact JSON), applied to each
step's logits here; the chosen token's log-probability is read from that step's raw logits (before the grammar
mask, as the transformers backends do), so no logits are computed for prompt tokens (llama-cpp-python's own
`logprobs` needs them for every prompt token: five times slower). Each prompt is evaluated on top of what the KV
cache already holds: the schema's instructions, which every document of that schema shares, and a re-prompt's
document are not evaluated again."""

from __future__ import annotations

import codecs
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.errors import ConfigError
from tasks.models.generation.base import Generation, GenerationRequest, GeneratorSpec
from tasks.models.generation.constrained import TokenScore
from tasks.models.generation.gguf import gguf_file

# Tokens of prompt and answer together: the longest document text a prompt quotes, a re-prompt's previous answer
# and extraction's longest answer fit with room to spare.
CONTEXT_TOKENS = 6144


@dataclass
class EngineCounters:
    """Tokens evaluated and the time they took since the model loaded: prompt tokens not found in the KV cache
    (prefill) and answer tokens (decode, the grammar included)."""

    prefill_tokens: int = 0
    prefill_s: float = 0.0
    decode_tokens: int = 0
    decode_s: float = 0.0


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class LlamaCppGenerator:
    """Any GGUF chat model by `pkg:` name or local path, on the CPU."""

    reads_images = False

    def __init__(self, spec: GeneratorSpec) -> None:
        try:
            import llama_cpp
        except ImportError:
            raise ConfigError(
                "DOCFLOW_TEXT_LLM_ENGINE=llama.cpp needs llama-cpp-python: pip install 'docflow[llama]' "
                "(make run/test install it), or set DOCFLOW_TEXT_LLM_ENGINE=transformers"
            ) from None
        import xgrammar as xgr
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._ll = llama_cpp
        self._xgr = xgr
        path = gguf_file(spec.model, spec.cache_dir)
        cores = _cores()
        self.llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=CONTEXT_TOKENS,
            n_batch=512,
            n_threads=cores,
            n_threads_batch=cores,
            logits_all=False,
            verbose=False,
        )
        self.model_id = spec.model
        self.n_vocab = self.llm.n_vocab()
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._stops = {t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)}
        # Every token as the bytes it stands for (a control token as nothing), for xgrammar and for the answer.
        self._pieces = [
            b"" if t in self._stops else self.llm.detokenize([t], special=False) for t in range(self.n_vocab)
        ]
        info = xgr.TokenizerInfo(
            self._pieces, vocab_type=xgr.VocabType.RAW, vocab_size=self.n_vocab, stop_token_ids=sorted(self._stops)
        )
        self._compiler = xgr.GrammarCompiler(info)
        self._grammars: dict[str, Any] = {}
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ConfigError(f"{spec.model}: the GGUF file carries no chat template (tokenizer.chat_template)")
        bos = self._piece_text(self.llm.token_bos())
        eos = self._piece_text(self.llm.token_eos())
        self._chat = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        self._bos_text = bos
        self._lock = threading.Lock()  # one context: one generation at a time
        self.counters = EngineCounters()

    def _piece_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _grammar(self, schema_json: str) -> Any:
        if schema_json not in self._grammars:
            # Compact JSON: free whitespace would let a weak model pad its answer with blanks forever.
            self._grammars[schema_json] = self._compiler.compile_json_schema(schema_json, any_whitespace=False)
        return self._grammars[schema_json]

    def _prompt_tokens(self, prompt: str) -> list[int]:
        text = self._chat(messages=[{"role": "user", "content": prompt}]).prompt
        add_bos = bool(self._bos_text) and not text.startswith(self._bos_text)
        tokens: list[int] = self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        return tokens

    def _evaluate_prompt(self, tokens: list[int]) -> None:
        """Evaluate `tokens` on top of the longest prefix the KV cache already holds (the last token is always
        evaluated again, for fresh logits); Llama.eval drops the cache past `n_tokens` first."""
        held = self.llm.input_ids[: self.llm.n_tokens].tolist()
        shared = 0
        for cached, token in zip(held, tokens, strict=False):
            if cached != token:
                break
            shared += 1
        self.llm.n_tokens = reused = min(shared, len(tokens) - 1)
        started = time.perf_counter()
        self.llm.eval(tokens[reused:])
        self.counters.prefill_s += time.perf_counter() - started
        self.counters.prefill_tokens += len(tokens) - reused

    def _last_logits(self) -> np.ndarray:
        pointer = self._ll.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()

    def _generate_one(self, request: GenerationRequest, max_new_tokens: int) -> Generation:
        import torch

        tokens = self._prompt_tokens(request.prompt)
        if len(tokens) + max_new_tokens > CONTEXT_TOKENS:
            raise ValueError(
                f"prompt of {len(tokens)} tokens plus {max_new_tokens} new ones exceeds llama.cpp's context of "
                f"{CONTEXT_TOKENS}"
            )
        matcher = self._xgr.GrammarMatcher(self._grammar(request.schema_json))
        bitmask = self._xgr.allocate_token_bitmask(1, self.n_vocab)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scores: list[TokenScore] = []
        self._evaluate_prompt(tokens)
        started = time.perf_counter()
        finished = False
        for _ in range(max_new_tokens):
            raw = self._last_logits()
            masked = torch.from_numpy(raw.copy())
            matcher.fill_next_token_bitmask(bitmask)
            self._xgr.apply_token_bitmask_inplace(masked, bitmask[0])
            token = int(torch.argmax(masked))
            if token in self._stops or not matcher.accept_token(token):
                finished = token in self._stops
                break
            peak = float(raw.max())
            logprob = float(raw[token] - peak - np.log(np.exp(raw - peak).sum()))
            scores.append(TokenScore(decoder.decode(self._pieces[token]), logprob))
            if matcher.is_terminated():
                finished = True
                break
            self.llm.eval([token])
        self.counters.decode_s += time.perf_counter() - started
        self.counters.decode_tokens += len(scores)
        tail = decoder.decode(b"", final=True)
        if tail and scores:
            scores[-1] = TokenScore(scores[-1].text + tail, scores[-1].logprob)
        return Generation("".join(s.text for s in scores), scores, finished)

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int) -> list[Generation]:
        """One request after another: on CPU threads, llama.cpp spends them all on each (no batching)."""
        with self._lock:
            return [self._generate_one(r, max_new_tokens) for r in requests]
