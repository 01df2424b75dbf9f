"""llama.cpp in process (llama-cpp-python): a GGUF text LLM as it ships (4-bit weights: no conversion, no fp32
copy), on every core this process may use.

Decoding is greedy under the same xgrammar grammar as the transformers backends (compact JSON), applied to each
step's logits here; what the grammar alone decides (the opening brace, each key with its quotes and colon) is
evaluated in one batch with the token before it instead of being decoded token by token (jump-forward decoding).
The chosen token's log-probability is read from that step's raw logits (before the grammar mask, as the
transformers backends do), so no logits are computed for prompt tokens (llama-cpp-python's own `logprobs` needs
them for every prompt token: five times slower). Each prompt is evaluated on top of what the KV cache already
holds: the schema's instructions, which every document of that schema shares, and a re-prompt's document are not
evaluated again."""

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
# Forced tokens evaluated together with the last decoded one may run this far past max_new_tokens.
FORCED_MARGIN = 64


@dataclass
class EngineCounters:
    """Tokens evaluated and the time they took since the model loaded: prompt tokens not found in the KV cache
    (prefill) and answer tokens (decode, the grammar included)."""

    prefill_tokens: int = 0
    prefill_s: float = 0.0
    decode_tokens: int = 0
    decode_s: float = 0.0
    forced_tokens: int = 0  # answer tokens the grammar decided alone, evaluated in batches (jump-forward)


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
            flash_attn=True,  # measured: 6-10 % faster prefill of a receipt's prompt on two cores, decode the same
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
        prompt = self._prompt_tokens(request.prompt)
        if len(prompt) + max_new_tokens + FORCED_MARGIN > CONTEXT_TOKENS:
            raise ValueError(
                f"prompt of {len(prompt)} tokens plus {max_new_tokens} new ones exceeds llama.cpp's context of "
                f"{CONTEXT_TOKENS}"
            )
        answer = _Answer(self, self._grammar(request.schema_json))
        self._evaluate_prompt(prompt + answer.take_forced())  # the opening `{"first_key":` rides with the prompt
        raw = self._last_logits()
        started = time.perf_counter()
        while len(answer.tokens) < max_new_tokens:
            token = answer.choose(raw)
            if not answer.accept(token, raw) or answer.finished:
                break
            self.llm.eval([token, *answer.take_forced()])
            raw = self._last_logits()
        self.counters.decode_s += time.perf_counter() - started
        self.counters.decode_tokens += sum(not s.forced for s in answer.scores)
        self.counters.forced_tokens += sum(s.forced for s in answer.scores)
        return answer.generation()

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int) -> list[Generation]:
        """One request after another: on CPU threads, llama.cpp spends them all on each (no batching)."""
        with self._lock:
            return [self._generate_one(r, max_new_tokens) for r in requests]


class _Answer:
    """One answer being decoded: its grammar state, its tokens and their scores."""

    def __init__(self, engine: LlamaCppGenerator, grammar: Any) -> None:
        self.engine = engine
        self.matcher = engine._xgr.GrammarMatcher(grammar)
        self.bitmask = engine._xgr.allocate_token_bitmask(1, engine.n_vocab)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.tokens: list[int] = []  # every answer token, the forced ones included
        self.scores: list[TokenScore] = []
        self.finished = False

    def choose(self, raw: np.ndarray) -> int:
        """Greedy under the grammar: the most likely token the grammar allows next."""
        import torch

        masked = torch.from_numpy(raw.copy())
        self.matcher.fill_next_token_bitmask(self.bitmask)
        self.engine._xgr.apply_token_bitmask_inplace(masked, self.bitmask[0])
        return int(torch.argmax(masked))

    def accept(self, token: int, raw: np.ndarray) -> bool:
        """Take `token` with its log-probability from the raw logits (before the grammar mask); False at a stop."""
        if token in self.engine._stops or not self.matcher.accept_token(token):
            self.finished = token in self.engine._stops
            return False
        peak = float(raw.max())
        logprob = float(raw[token] - peak - np.log(np.exp(raw - peak).sum()))
        self.tokens.append(token)
        self.scores.append(TokenScore(self.decoder.decode(self.engine._pieces[token]), logprob))
        self.finished = self.matcher.is_terminated()
        return True

    def jump_pending(self) -> bool:
        return bool(self.matcher.find_jump_forward_string())

    def take_forced(self) -> list[int]:
        """Jump-forward decoding: the tokens of what the grammar alone decides next (a key, its quotes and colon),
        accepted here so they are evaluated in one batch instead of decoded one by one. The last of them is left
        to the model: it may merge with the value that follows (`"` and `M` as `"M`)."""
        jump = self.matcher.find_jump_forward_string()
        if not jump:
            return []
        forced: list[int] = self.engine.llm.tokenize(jump.encode("utf-8"), add_bos=False, special=False)[:-1]
        if not forced or not self.matcher.accept_string(b"".join(self.engine._pieces[t] for t in forced)):
            return []
        self.tokens.extend(forced)
        self.scores.extend(TokenScore(self.decoder.decode(self.engine._pieces[t]), 0.0, forced=True) for t in forced)
        return forced

    def generation(self) -> Generation:
        tail = self.decoder.decode(b"", final=True)
        if tail and self.scores:
            last = self.scores[-1]
            self.scores[-1] = TokenScore(last.text + tail, last.logprob, last.forced)
        return Generation("".join(s.text for s in self.scores), self.scores, self.finished)
