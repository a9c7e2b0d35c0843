"""A judge behind any OpenAI-compatible chat-completions server: OpenAI, vLLM, Ollama, llama.cpp's
server, TGI.

Requests go out at most ``concurrency`` at a time. Rate limits and server errors (408, 429, 5xx),
timeouts and dropped connections are retried up to ``retries`` times with jittered exponential
back-off, or as long as a ``Retry-After`` header (seconds or an HTTP date) asks (:mod:`evalsuite.retry`).
What still fails, and every reply that is not a chat completion, becomes a
:class:`~evalsuite.registry.ScoreFailure` with the raw reply, so the run can name the record.

Example (a local vLLM server):
    >>> backend = OpenAICompatibleBackend("http://127.0.0.1:8000/v1", "Qwen2.5-7B-Instruct")
    >>> backend.describe()["backend"]
    'openai-compatible'
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from evalsuite._validation import check_positive_int
from evalsuite.errors import ConfigError, MissingDependencyError
from evalsuite.judges.backends import BackendStats, JudgeReply, JudgeRequest, TokenChoice
from evalsuite.registry import ScoreFailure
from evalsuite.retry import retry_delay

__all__ = ["RETRY_STATUSES", "OpenAICompatibleBackend"]

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_WAIT_S = 120.0  # the longest single wait, whatever Retry-After asks
RAW_LIMIT = 2000  # characters of a bad reply kept in the error


class OpenAICompatibleBackend:
    """Chat completions over HTTP with bounded concurrency, timeouts and retries.

    ``api_key_env`` names the environment variable holding the key (read when a request is sent, never
    stored in configs); no variable, no ``Authorization`` header (local servers). ``logprobs=False``
    for servers that refuse the option: verdicts are then read from the reply's text.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.5,
        logprobs: bool = True,
        top_logprobs: int = 20,
        temperature: float = 0.0,
        seed: int | None = 0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        check_positive_int("concurrency", concurrency)
        if retries < 0 or timeout <= 0 or backoff < 0:
            raise ConfigError(
                f"expected retries >= 0, timeout > 0 and backoff >= 0, got {retries}, {timeout}, {backoff}"
            )
        if not 0 <= top_logprobs <= 20:
            raise ConfigError(f"top_logprobs must be between 0 and 20 (the API's limit), got {top_logprobs}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.logprobs = logprobs
        self.top_logprobs = top_logprobs
        self.temperature = temperature
        self.seed = seed
        self.stats = BackendStats()

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai-compatible", "base_url": self.base_url, "model": self.model}

    def complete(self, requests: Sequence[JudgeRequest]) -> list[JudgeReply | ScoreFailure]:
        if not requests:
            return []
        # One client per call: its connections are reused across the call's requests and closed
        # after them (a metric has no close hook; a call is a whole batch of requests).
        with self._http_client() as client, ThreadPoolExecutor(min(self.concurrency, len(requests))) as pool:
            return list(pool.map(lambda request: self._complete_one(client, request), requests))

    # -- one request ----------------------------------------------------------------------------
    def _http_client(self) -> Any:
        try:
            import httpx
        except ImportError as error:
            raise MissingDependencyError("HTTP judges need httpx: pip install httpx") from error
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        return httpx.Client(timeout=self.timeout, limits=limits)

    def _body(self, request: JudgeRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(request.messages),
            "max_tokens": request.max_tokens,
            "temperature": self.temperature,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        if self.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = self.top_logprobs
        return body

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _complete_one(self, client: Any, request: JudgeRequest) -> JudgeReply | ScoreFailure:
        import httpx

        body = self._body(request)
        problem = ScoreFailure("no request was sent")
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.add(retries=1)
            self.stats.add(requests=1)
            retry_after = None
            try:
                response = client.post(self.url, json=body, headers=self._headers())
            except httpx.TimeoutException:
                problem = ScoreFailure(f"the judge server did not answer within {self.timeout:g} s")
            except httpx.TransportError as error:
                problem = ScoreFailure(f"cannot reach the judge server at {self.url}: {error}")
            else:
                if response.status_code < 400:
                    return self._parsed(response.text)
                problem = ScoreFailure(
                    f"the judge server answered HTTP {response.status_code}", response.text[:RAW_LIMIT]
                )
                if response.status_code not in RETRY_STATUSES:
                    break
                retry_after = response.headers.get("retry-after")
            if attempt < self.retries:
                time.sleep(retry_delay(attempt, self.backoff, retry_after, MAX_WAIT_S))
        self.stats.add(failures=1)
        attempts = "" if self.retries == 0 else f" (after {self.retries} retries)"
        return ScoreFailure(problem.reason + attempts, problem.raw)

    def _parsed(self, text: str) -> JudgeReply | ScoreFailure:
        """A chat completion's text, token log-probabilities and usage; anything else is a failure."""
        try:
            data = json.loads(text)
            message = data["choices"][0]["message"]
            content = message.get("content")
            if not isinstance(content, str) or not content.strip():
                refusal = message.get("refusal")
                self.stats.add(failures=1)
                reason = "the judge refused to answer" if refusal else "the judge's reply has no text"
                return ScoreFailure(reason, str(refusal or text)[:RAW_LIMIT])
            logprobs = (data["choices"][0].get("logprobs") or {}).get("content") or []
            tokens = tuple(
                TokenChoice(
                    str(item["token"]),
                    {str(top["token"]): float(top["logprob"]) for top in item.get("top_logprobs") or []}
                    or {str(item["token"]): float(item["logprob"])},
                )
                for item in logprobs
            )
            usage = data.get("usage") or {}
            reply = JudgeReply(
                content,
                tokens,
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            self.stats.add(failures=1)
            return ScoreFailure("the judge server's reply is not a valid chat completion", text[:RAW_LIMIT])
        self.stats.add(prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)
        return reply
