"""llama.cpp in process (llama-cpp-python): a GGUF text LLM as it ships (4-bit weights: no conversion, no fp32
copy), on every core this process may use.

The requests of one `generate` call are decoded together, one sequence each in one KV cache (llama.cpp's
low-level batch API): every step evaluates each unfinished sequence's next token in a single batch, which two
CPU cores do 1.7 times faster than the same tokens one sequence at a time (measured: 50 against 30 tokens/s with
four sequences of the 0.5B model). A prompt is evaluated only past the longest prefix any cached sequence holds:
the schema's instructions, which every document of that schema shares, and a re-prompt's document are not
evaluated again.

Decoding is greedy under the same xgrammar grammar as the transformers backends (compact JSON), applied to each
step's logits here; what the grammar alone decides (the opening brace, each key with its quotes and colon) is
evaluated in the batch with the token before it instead of being decoded token by token (jump-forward decoding).
The chosen token's log-probability is read from that step's raw logits (before the grammar mask, as the
transformers backends do), so no logits are computed for prompt tokens (llama-cpp-python's own `logprobs` needs
them for every prompt token: five times slower)."""

from __future__ import annotations

import codecs
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas.defaults import usable_cores
from schemas.errors import ConfigError
from tasks.models.generation.base import Generation, GenerationRequest, GeneratorSpec
from tasks.models.generation.constrained import TokenScore
from tasks.models.generation.gguf import gguf_file

# KV cells shared by the sequences decoded together (one unified cache): the longest document text a prompt
# quotes, a re-prompt's previous answer and extraction's longest answer fit in one sequence with room to spare,
# and a batch of receipts fits whole. Requests that do not fit together wait for the next group.
CONTEXT_TOKENS = 8192
# Sequences decoded together: past four, two cores gain little (53 against 50 tokens/s with eight).
MAX_SEQUENCES = 4
# Forced tokens evaluated together with the last decoded one may run this far past max_new_tokens.
FORCED_MARGIN = 64
# Tokens evaluated in one llama_decode call (prompt chunks of several sequences share it).
BATCH_TOKENS = 512


@dataclass
class EngineCounters:
    """Tokens evaluated and the time they took since the model loaded: prompt tokens not found in the KV cache
    (prefill) and answer tokens (decode, the grammar included)."""

    prefill_tokens: int = 0
    prefill_s: float = 0.0
    decode_tokens: int = 0
    decode_s: float = 0.0
    forced_tokens: int = 0  # answer tokens the grammar decided alone, evaluated in batches (jump-forward)
    decode_steps: int = 0  # llama_decode calls while answering: fewer than decode_tokens when sequences share them


@dataclass
class _Entry:
    token: int
    position: int
    sequence: int
    logits: bool


@dataclass
class _Sequence:
    """One request being answered: its sequence id in the KV cache, every token the cache holds for it, and the
    answer under its grammar."""

    seq_id: int
    tokens: list[int]
    answer: _Answer
    pending: list[int] = field(default_factory=list)  # to evaluate next
    logits: np.ndarray | None = None


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
        cores = usable_cores()
        # Llama holds the weights, the vocabulary and the chat template; its own context is left minimal (a few
        # cells) because decoding runs in the multi-sequence context made below.
        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_batch=8, n_ubatch=8, n_threads=1, verbose=False)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = CONTEXT_TOKENS
        params.n_batch = params.n_ubatch = BATCH_TOKENS
        params.n_seq_max = 2 * MAX_SEQUENCES  # a group's sequences and the previous group's, copied from
        params.kv_unified = True  # one pool of cells: a prefix copied to another sequence is shared, not duplicated
        params.n_threads = params.n_threads_batch = cores
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED  # 6-10 % faster prefill here
        self._ctx = llama_cpp.llama_init_from_model(self.llm.model, params)
        if not self._ctx:
            raise RuntimeError(f"llama.cpp could not make a context of {CONTEXT_TOKENS} tokens for {spec.model}")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(BATCH_TOKENS, 0, 1)
        self._held: dict[int, list[int]] = {}  # sequence id -> the tokens the cache holds for it
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
        self._lock = threading.Lock()  # one KV cache: one generate() at a time
        self.counters = EngineCounters()

    def __del__(self) -> None:
        if getattr(self, "_ctx", None):
            self._ll.llama_batch_free(self._batch)
            self._ll.llama_free(self._ctx)
            self._ctx = None

    def _piece_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _grammar(self, schema_json: str) -> Any:
        if schema_json not in self._grammars:
            # Compact JSON: free whitespace would let a weak model pad its answer with blanks forever.
            self._grammars[schema_json] = self._compiler.compile_json_schema(schema_json, any_whitespace=False)
        return self._grammars[schema_json]

    def _prompt_tokens(self, prompt: str, max_new_tokens: int) -> list[int]:
        text = self._chat(messages=[{"role": "user", "content": prompt}]).prompt
        add_bos = bool(self._bos_text) and not text.startswith(self._bos_text)
        tokens: list[int] = self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        if len(tokens) + max_new_tokens + FORCED_MARGIN > CONTEXT_TOKENS:
            raise ValueError(
                f"prompt of {len(tokens)} tokens plus {max_new_tokens} new ones exceeds llama.cpp's context of "
                f"{CONTEXT_TOKENS}"
            )
        return tokens

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int) -> list[Generation]:
        """The requests in groups of up to MAX_SEQUENCES that fit the KV cache together, each group decoded as
        one batch."""
        with self._lock:
            prompts = [self._prompt_tokens(r.prompt, max_new_tokens) for r in requests]
            results: list[Generation] = []
            start = 0
            while start < len(requests):
                end, cells = start, 0
                while end < len(requests) and end - start < MAX_SEQUENCES:
                    cells += len(prompts[end]) + max_new_tokens + FORCED_MARGIN
                    if end > start and cells > CONTEXT_TOKENS:
                        break
                    end += 1
                results.extend(self._generate_group(requests[start:end], prompts[start:end], max_new_tokens))
                start = end
            return results

    def _generate_group(
        self, requests: list[GenerationRequest], prompts: list[list[int]], max_new_tokens: int
    ) -> list[Generation]:
        started = time.perf_counter()
        sequences = self._prefill(requests, prompts)
        self.counters.prefill_s += time.perf_counter() - started
        started = time.perf_counter()
        active = list(sequences)
        while active:
            for sequence in active:
                answer, logits = sequence.answer, sequence.logits
                assert logits is not None
                if len(answer.tokens) >= max_new_tokens:
                    continue  # cut off: Generation.finished stays False
                token = answer.choose(logits)
                if answer.accept(token, logits) and not answer.finished:
                    sequence.pending = [token, *answer.take_forced()]
            active = [s for s in active if s.pending]
            if active:
                self._evaluate(active)
                self.counters.decode_steps += 1
        self.counters.decode_s += time.perf_counter() - started
        for sequence in sequences:
            scores = sequence.answer.scores
            self.counters.decode_tokens += sum(not s.forced for s in scores)
            self.counters.forced_tokens += sum(s.forced for s in scores)
        return [s.answer.generation() for s in sequences]

    def _prefill(self, requests: list[GenerationRequest], prompts: list[list[int]]) -> list[_Sequence]:
        """A sequence for each request, its prompt evaluated past the longest prefix that a cached sequence holds
        (the previous group's or an earlier one of this group: copied, the cells are shared). One prompt after
        another: a CPU gains nothing from evaluating several prompts together, and a later prompt can take the
        schema's instructions from an earlier one. The last prompt token is always evaluated again, for fresh
        logits. The previous group's sequences are trimmed to what is copied first, and dropped at the end, so
        the cache never holds more than this group needs."""
        ll = self._ll
        answers = [_Answer(self, self._grammar(r.schema_json)) for r in requests]
        # The opening `{"first_key":` that the grammar decides rides with the prompt.
        wanted = [prompt + answer.take_forced() for prompt, answer in zip(prompts, answers, strict=True)]
        keep: dict[int, int] = {}
        for tokens in wanted:
            best = max(self._held.items(), key=lambda item: _common_prefix(item[1], tokens), default=None)
            if best is not None and (common := _common_prefix(best[1], tokens)):
                keep[best[0]] = max(keep.get(best[0], 0), common)
        for held_id in list(self._held):
            ll.llama_memory_seq_rm(self._memory, held_id, keep.get(held_id, 0), -1)
            self._held[held_id] = self._held[held_id][: keep.get(held_id, 0)]
        free = [s for s in range(2 * MAX_SEQUENCES) if s not in self._held]
        sources = dict(self._held)
        sequences = []
        for tokens, answer in zip(wanted, answers, strict=True):
            seq_id = free.pop(0)
            shared, source = 0, -1
            for held_id, held in sources.items():
                if (common := _common_prefix(held, tokens)) > shared:
                    shared, source = common, held_id
            shared = min(shared, len(tokens) - 1)
            if shared > 0:
                ll.llama_memory_seq_cp(self._memory, source, seq_id, 0, shared)
            sequence = _Sequence(seq_id, tokens[:shared], answer, pending=tokens[shared:])
            self.counters.prefill_tokens += self._evaluate([sequence])
            sources[seq_id] = tokens
            sequences.append(sequence)
        for held_id in self._held:
            ll.llama_memory_seq_rm(self._memory, held_id, -1, -1)
        self._held = {s.seq_id: s.tokens for s in sequences}  # grows with each answer token evaluated
        return sequences

    def _evaluate(self, sequences: list[_Sequence]) -> int:
        """Evaluate every sequence's pending tokens, in batches of up to BATCH_TOKENS, and keep the logits after
        each sequence's last one. Returns the number of tokens evaluated."""
        entries: list[_Entry] = []
        for sequence in sequences:
            position = len(sequence.tokens)
            entries.extend(
                _Entry(token, position + i, sequence.seq_id, i == len(sequence.pending) - 1)
                for i, token in enumerate(sequence.pending)
            )
            sequence.tokens.extend(sequence.pending)
            sequence.pending = []
        by_id = {s.seq_id: s for s in sequences}
        for first in range(0, len(entries), BATCH_TOKENS):
            chunk = entries[first : first + BATCH_TOKENS]
            batch = self._batch
            batch.n_tokens = len(chunk)
            for i, entry in enumerate(chunk):
                batch.token[i] = entry.token
                batch.pos[i] = entry.position
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = entry.sequence
                batch.logits[i] = entry.logits
            if (code := self._ll.llama_decode(self._ctx, batch)) != 0:
                raise RuntimeError(f"llama_decode failed ({code}): the KV cache of {CONTEXT_TOKENS} cells is full")
            for i, entry in enumerate(chunk):
                if entry.logits:
                    pointer = self._ll.llama_get_logits_ith(self._ctx, i)
                    by_id[entry.sequence].logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()
        return len(entries)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


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
