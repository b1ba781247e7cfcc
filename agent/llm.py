"""A thin OpenAI-compatible chat client for the agent: any endpoint that speaks ``/v1/chat/completions``
(OpenAI, vLLM, Ollama, llama.cpp's server) through the official ``openai`` client.

Why not call the SDK directly from the graph: structured output needs the same dance everywhere —
send the JSON Schema as ``response_format``, parse, repair a truncated or fenced reply locally,
re-ask once with the validation error, give up cleanly — and token usage has to be summed over
every call for the report. Images go in as base64 ``data:`` URLs so no server needs to fetch them.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from imgrag.indexing.config import Settings, get_settings
from imgrag.indexing.errors import ImgragError

from .schemas import Usage

log = logging.getLogger("imgrag.agent")

T = TypeVar("T", bound=BaseModel)
Message = dict[str, Any]


class LLMConfig(BaseModel):
    """Where the models are: :meth:`from_settings` reads them from the one settings object
    (``IMGRAG_LLM_*``, ``IMGRAG_VLM_MODEL``, ``OPENAI_BASE_URL``/``OPENAI_API_KEY``, imgrag.toml)."""

    base_url: str | None = None
    api_key: str = "not-needed"
    model: str | None = Field(default=None, description="chat model; discovered from /models when unset")
    vlm_model: str | None = Field(default=None, description="vision model for looking at crops; none = skip")
    max_tokens: int = Field(default=700, ge=16, description="completion cap per call")
    temperature: float = 0.0
    timeout_s: float = 300.0
    repair_retries: int = Field(default=1, ge=0, le=3, description="re-asks after an invalid structured reply")
    verify: bool = Field(default=True, description="ask the LLM whether each claim is supported")

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> LLMConfig | None:
        """The configured endpoint, or None (extractive mode) when neither a base URL nor a model is
        set or ``IMGRAG_LLM=off``."""
        s = settings if settings is not None else get_settings()
        if not s.llm or (not s.llm_base_url and not s.llm_model):
            return None
        return cls(
            base_url=s.llm_base_url,
            api_key=s.llm_api_key.get_secret_value() if s.llm_api_key is not None else "not-needed",
            model=s.llm_model,
            vlm_model=s.vlm_model,
            max_tokens=s.llm_max_tokens,
            timeout_s=s.llm_timeout,
            verify=s.llm_verify,
        )


class LLMOutputError(ImgragError):
    """The model's reply could not be turned into the requested schema within the repair budget."""


def image_part(png: bytes, mime: str = "image/png") -> dict[str, Any]:
    """An image as an OpenAI ``image_url`` content part with a base64 data URL."""
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(png).decode()}"}}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


# -- JSON repair ----------------------------------------------------------------------------
_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.S)


def _close_json(text: str) -> Any:
    """Parse the longest prefix of ``text`` that can be completed into valid JSON by closing open
    strings, arrays and objects: what a reply cut off by ``max_tokens`` still says."""
    stack: list[str] = []
    in_str = esc = False
    cuts: list[tuple[int, list[str], bool]] = []  # (end index, closers, inside a string)
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
                cuts.append((i + 1, list(stack), False))
            else:
                cuts.append((i + 1, list(stack), True))
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
            cuts.append((i + 1, list(stack), False))
        elif ch in "}]":
            if stack:
                stack.pop()
            cuts.append((i + 1, list(stack), False))
        elif ch.isalnum() or ch in ".-+":
            cuts.append((i + 1, list(stack), False))
    for end, closers, open_str in reversed(cuts):
        head = text[:end] + ('"' if open_str else "")
        head = re.sub(r"[,:]\s*$", "", head.rstrip())
        try:
            return json.loads(head + "".join(reversed(closers)))
        except ValueError:
            continue
    raise ValueError("no JSON object in the reply")


def parse_json_reply(text: str) -> tuple[Any, bool]:
    """JSON from a model reply: as is, else from a code fence or the first ``{``, else the longest
    completable prefix. Returns ``(value, repaired)``."""
    text = (text or "").strip()
    try:
        return json.loads(text), False
    except ValueError:
        pass
    m = _FENCE.search(text)
    candidates = [m.group(1).strip()] if m else []
    start = text.find("{")
    if start >= 0:
        candidates.append(text[start:])
    for cand in candidates:
        try:
            return json.loads(cand), True
        except ValueError:
            try:
                return _close_json(cand), True
            except ValueError:
                continue
    raise ValueError("no JSON object in the reply")


def json_schema_for(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with ``$defs`` inlined: several OpenAI-compatible servers'
    constrained decoders do not follow ``$ref``."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].split("/")[-1]])
            return {k: inline(v) for k, v in node.items() if k != "title"}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def schema_example(schema: dict[str, Any]) -> Any:
    """A compact example instance of an (inlined) schema, for the prompt: far fewer tokens than the
    schema itself, which small local models cannot afford, while the endpoint enforces the schema."""
    t = schema.get("type")
    if t == "object" or "properties" in schema:
        return {k: schema_example(v) for k, v in schema.get("properties", {}).items()}
    if t == "array":
        return [schema_example(schema.get("items", {}))]
    if t == "boolean":
        return True
    if t in ("integer", "number"):
        return 0
    if "anyOf" in schema:
        return schema_example(next((s for s in schema["anyOf"] if s.get("type") != "null"), {}))
    return f"<{schema.get('description', 'text')}>"


# -- the client -----------------------------------------------------------------------------
class LLMClient:
    """One endpoint, usage summed over every call (``self.usage``)."""

    def __init__(self, config: LLMConfig, usage: Usage | None = None) -> None:
        from openai import AsyncOpenAI

        self.config = config
        self.usage = usage if usage is not None else Usage()
        self._client = AsyncOpenAI(
            base_url=config.base_url, api_key=config.api_key, timeout=config.timeout_s, max_retries=1
        )
        self._schema_format_ok = True  # flipped off if the endpoint rejects json_schema response_format
        self._tools_ok = True  # flipped off if it rejects assistant tool_calls / tool messages

    @property
    def model(self) -> str:
        if not self.config.model:
            raise ImgragError("no LLM model chosen", "set IMGRAG_LLM_MODEL")
        return self.config.model

    async def resolve_model(self) -> str:
        """``IMGRAG_LLM_MODEL``, else the first model the endpoint lists (llama.cpp and vLLM serve one)."""
        if self.config.model:
            return self.config.model
        try:
            models = await self._client.models.list()
            ids = [m.id for m in models.data]
        except Exception as e:
            raise ImgragError(
                f"cannot list models at {self.config.base_url} ({type(e).__name__}: {e})",
                "set IMGRAG_LLM_MODEL, and check OPENAI_BASE_URL points at an OpenAI-compatible /v1 endpoint",
            ) from e
        if not ids:
            raise ImgragError(f"{self.config.base_url} serves no models", "set IMGRAG_LLM_MODEL")
        self.config.model = ids[0]
        return ids[0]

    @property
    def tools_ok(self) -> bool:
        return self._tools_ok

    async def chat(
        self,
        messages: list[Message],
        *,
        max_tokens: int | None = None,
        schema: tuple[str, dict[str, Any]] | None = None,
        model: str | None = None,
        purpose: str = "chat",
    ) -> str:
        """One completion; returns the text. ``schema`` = (name, JSON Schema) asks for structured output."""
        from openai import APIConnectionError, APIStatusError, APITimeoutError

        kwargs: dict[str, Any] = {
            "model": model or await self.resolve_model(),
            "messages": messages if self._tools_ok else _flatten_tool_messages(messages),
            "max_tokens": max_tokens or self.config.max_tokens,
            "temperature": self.config.temperature,
        }
        if schema is not None and self._schema_format_ok:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema[0], "schema": schema[1], "strict": False},
            }
        for _attempt in range(3):
            try:
                resp = await self._client.chat.completions.create(**kwargs)
                break
            except APIStatusError as e:
                # Endpoints differ in what they accept; degrade once per feature, then report.
                if e.status_code in (400, 422) and "response_format" in kwargs:
                    log.info("endpoint rejected response_format (%s); asking for JSON in the prompt only", e.status_code)
                    self._schema_format_ok = False
                    kwargs.pop("response_format")
                    continue
                if e.status_code in (400, 422) and self._tools_ok and _has_tool_messages(kwargs["messages"]):
                    log.info("endpoint rejected tool messages (%s); inlining tool results", e.status_code)
                    self._tools_ok = False
                    kwargs["messages"] = _flatten_tool_messages(messages)
                    continue
                raise ImgragError(
                    f"the LLM endpoint answered {e.status_code} for the {purpose} call: {str(e)[:300]}",
                    "check OPENAI_BASE_URL, OPENAI_API_KEY and IMGRAG_LLM_MODEL",
                ) from e
            except APITimeoutError as e:
                raise ImgragError(
                    f"the LLM endpoint {self.config.base_url or 'api.openai.com'} did not answer the {purpose} call "
                    f"within {self.config.timeout_s:g} s",
                    "raise IMGRAG_LLM_TIMEOUT, use a faster model, or unset OPENAI_BASE_URL for the extractive mode",
                ) from e
            except APIConnectionError as e:
                raise ImgragError(
                    f"cannot reach the LLM endpoint {self.config.base_url or 'api.openai.com'} ({type(e).__name__})",
                    "start the server or fix OPENAI_BASE_URL; unset it to use the extractive mode",
                ) from e
        else:  # pragma: no cover - the loop always breaks or raises
            raise ImgragError("the LLM endpoint kept rejecting the request", "check the endpoint")
        self.usage.llm_calls += 1
        if resp.usage is not None:
            self.usage.prompt_tokens += resp.usage.prompt_tokens or 0
            self.usage.completion_tokens += resp.usage.completion_tokens or 0
            self.usage.total_tokens += resp.usage.total_tokens or 0
        if not resp.choices:
            return ""
        return resp.choices[0].message.content or ""

    async def structured(
        self,
        messages: list[Message],
        model_cls: type[T],
        *,
        purpose: str,
        max_tokens: int | None = None,
        model: str | None = None,
    ) -> T:
        """A reply validated against ``model_cls``: constrained decoding where the endpoint supports
        it, local repair of truncated/fenced JSON, then at most ``repair_retries`` re-asks quoting the
        error. Raises :class:`LLMOutputError` when the budget is spent."""
        schema = json_schema_for(model_cls)
        msgs = list(messages)
        msgs[0] = {
            **msgs[0],
            "content": f"{msgs[0]['content']}\nReply with one JSON object of this shape, nothing else:\n"
            + json.dumps(schema_example(schema), ensure_ascii=False),
        }
        last_error = ""
        for attempt in range(self.config.repair_retries + 1):
            text = await self.chat(msgs, schema=(model_cls.__name__, schema), max_tokens=max_tokens, model=model, purpose=purpose)
            try:
                data, repaired = parse_json_reply(text)
                value = model_cls.model_validate(data)
            except (ValueError, ValidationError) as e:
                last_error = _short_error(e)
                log.info("%s reply invalid (attempt %d): %s", purpose, attempt + 1, last_error)
                if attempt < self.config.repair_retries:
                    self.usage.llm_repairs += 1
                    msgs = [
                        *msgs,
                        {"role": "assistant", "content": text[:2000]},
                        {
                            "role": "user",
                            "content": f"That reply was not valid: {last_error}. Reply again with only the JSON object, "
                            "shorter if needed, matching the schema exactly.",
                        },
                    ]
                continue
            if repaired:
                self.usage.llm_repairs += 1
            return value
        self.usage.llm_failures += 1
        raise LLMOutputError(
            f"the LLM's {purpose} reply did not match the schema after {self.config.repair_retries + 1} attempt(s): {last_error}",
            "use a stronger model or raise IMGRAG_LLM_MAX_TOKENS",
        )

    async def close(self) -> None:
        await self._client.close()


def _short_error(e: Exception) -> str:
    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'root'}: {err['msg']}" for err in e.errors()[:4])
    return str(e)[:300]


def _has_tool_messages(messages: list[Message]) -> bool:
    return any(m.get("role") == "tool" or m.get("tool_calls") for m in messages)


def _flatten_tool_messages(messages: list[Message]) -> list[Message]:
    """Tool calls and results rewritten as plain user text, for endpoints without tool support."""
    out: list[Message] = []
    for m in messages:
        if m.get("tool_calls"):
            calls = ", ".join(f"{c['function']['name']}({c['function']['arguments']})" for c in m["tool_calls"])
            out.append({"role": "assistant", "content": f"(called {calls})"})
        elif m.get("role") == "tool":
            out.append({"role": "user", "content": f"Tool result:\n{m['content']}"})
        else:
            out.append(m)
    return out
