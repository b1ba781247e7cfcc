"""Pydantic models at the agent's boundaries: what the LLM must return, what ``imgrag ask`` prints.

Two families: the *LLM output* schemas (``LLMAnswer``, ``LLMPlan``, ``LLMVerdict``) are small and
bounded (``maxLength``/``maxItems``) because they are sent as JSON Schema to constrained decoders and
must fit a token budget; the *result* schemas (``Answer``, ``Citation``, ``Checks``, ``Usage``) are
what users and other programs read, with every citation resolved to a path, page and bbox.
"""

from __future__ import annotations

from typing import Literal

from typing import Any, get_args

from annotated_types import MaxLen
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

BBox = tuple[float, float, float, float]
Mode = Literal["llm", "extractive"]


# -- results ---------------------------------------------------------------------------------
class Citation(BaseModel):
    """One quoted OCR snippet and where it is: the image, its source file and page, and the box."""

    image_id: str
    path: str = Field(default="", description="source file of the image, as indexed on the server")
    page: int = Field(default=1, description="1-based page within the source file")
    bbox: BBox | None = Field(default=None, description="[x0, y0, x1, y1] of the quoted line, original-image pixels")
    snippet: str = Field(description="the quoted OCR text, verbatim")
    kind: Literal["text", "seal", "linked"] = Field(
        default="text",
        description="text: bbox is the quoted line's; seal: bbox is a seal the index's seal detector found "
        "(get_metadata), and the snippet is the OCR line nearest to it; linked: the page linked to another page "
        "the claim quotes (the X-ray of a quoted report, the defect photo of a quoted SOP), the snippet is what "
        "identifies it (its caption from the DICOM tags, or the label line that carries the link key), bbox that line's or null",
    )
    linked_to: str | None = Field(default=None, description="kind linked: the image_id of the quoted page it is linked to")
    why: str = Field(default="", description="kind linked: why the two are linked, e.g. accession=ACC2103045, part_number=BRK-5269, stem")


class Claim(BaseModel):
    """One statement of the answer and the citations that support it."""

    text: str
    citations: list[Citation] = Field(default_factory=list)
    sub_question: str = ""
    value: str = Field(default="", description="the value quoted from the snippet (extractive answers)")
    kind: Literal["value", "seal", "no_seal"] = Field(
        default="value",
        description="value: a quoted value; seal: where detected seals are (seal citations); no_seal: the "
        "cited page has no detected seal",
    )
    status: Literal["unchecked", "passed", "failed", "dropped"] = "unchecked"
    reasons: list[str] = Field(default_factory=list, description="why a check failed")


class CheckFailure(BaseModel):
    claim: str
    image_id: str | None = None
    snippet: str | None = None
    check: Literal["inspected", "snippet", "value", "support", "bbox", "seal", "linked", "llm_verify", "no_citation"]
    reason: str


class Checks(BaseModel):
    """What the self-check verified. ``passed`` is true when every claim that is *kept* passed."""

    passed: bool = True
    claims_total: int = 0
    claims_passed: int = 0
    claims_dropped: int = 0
    citations_checked: int = 0
    citations_passed: int = 0
    llm_verified: int = Field(default=0, description="claims an LLM judged supported by their snippets")
    retries: int = Field(default=0, description="retrieve/inspect rounds repeated after a failed check")
    failures: list[CheckFailure] = Field(default_factory=list, description="every failure seen, in every round")
    checks_run: list[str] = Field(default_factory=list, description="names of the checks applied")
    notes: list[str] = Field(default_factory=list)


class Usage(BaseModel):
    """Token usage reported by the LLM endpoint (0 in extractive mode) and MCP tool calls made."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    llm_calls: int = 0
    llm_repairs: int = Field(default=0, description="replies that needed a JSON repair (local or re-asked)")
    llm_failures: int = Field(default=0, description="replies still invalid after the bounded repair")
    tool_calls: dict[str, int] = Field(default_factory=dict)


class Answer(BaseModel):
    """The agent's final output (``imgrag ask --format json``)."""

    question: str
    answer: str
    mode: Mode
    claims: list[Claim] = Field(default_factory=list)
    citations: list[Citation] = Field(default_factory=list, description="numbered [1]..[n] in the answer text")
    checks: Checks = Field(default_factory=Checks)
    usage: Usage = Field(default_factory=Usage)
    timings_ms: dict[str, float] = Field(default_factory=dict, description="total time per graph node")

    def public(self) -> dict[str, object]:
        """The documented JSON shape: answer, citations, checks, usage, mode (plus question and claims)."""
        return {
            "question": self.question,
            "answer": self.answer,
            "citations": [c.model_dump(mode="json", exclude=None if c.kind == "linked" else {"linked_to", "why"}) for c in self.citations],
            "claims": [
                {
                    "text": cl.text,
                    "citations": [self.citations.index(c) + 1 for c in cl.citations if c in self.citations],
                }
                for cl in self.claims
            ],
            "checks": self.checks.model_dump(mode="json"),
            "usage": self.usage.model_dump(mode="json"),
            "mode": self.mode,
            "timings_ms": self.timings_ms,
        }


# -- LLM output schemas (bounded for constrained decoding) ------------------------------------
class _Bounded(BaseModel):
    """Trims over-long strings and lists instead of rejecting them: the bounds are there to cap a
    constrained decoder's output, and an unconstrained endpoint that overshoots still said something
    usable."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _trim(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, field in cls.model_fields.items():
            limit = next((m.max_length for m in field.metadata if isinstance(m, MaxLen)), None)
            value = data.get(name)
            if isinstance(value, list):
                # Drop items a truncated reply left incomplete instead of failing the whole reply.
                item_type = next(iter(get_args(field.annotation)), None)
                if isinstance(item_type, type) and issubclass(item_type, _Bounded):
                    value = [v for v in value if _valid(item_type, v)]
                    data[name] = value
            if limit is not None and isinstance(value, (str, list)) and len(value) > limit:
                data[name] = value[:limit]
        return data


def _valid(model: type[BaseModel], value: Any) -> bool:
    try:
        model.model_validate(value)
        return True
    except ValidationError:
        return False


class LLMCitation(_Bounded):
    image_id: str = Field(max_length=80, description="the image_id of the evidence block quoted")
    snippet: str = Field(max_length=200, description="text copied verbatim from one evidence line")


class LLMClaim(_Bounded):
    text: str = Field(max_length=300, description="one short factual statement answering part of the question")
    value: str = Field(default="", max_length=160, description="the answer value alone, copied from a candidate or an evidence line")
    citations: list[LLMCitation] = Field(default_factory=list, max_length=2)


class LLMAnswer(_Bounded):
    answer: str = Field(max_length=600, description="the answer in the question's language")
    claims: list[LLMClaim] = Field(default_factory=list, max_length=4)


class LLMSubQuestion(_Bounded):
    question: str = Field(max_length=200)
    queries: list[str] = Field(default_factory=list, max_length=2, description="search queries (keywords)")


class LLMPlan(_Bounded):
    sub_questions: list[LLMSubQuestion] = Field(default_factory=list, max_length=4)


class LLMVerdict(_Bounded):
    supported: bool
    reason: str = Field(default="", max_length=160)
