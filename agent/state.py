"""What one ``imgrag ask`` run knows (:class:`AgentState`) and what it uses (:class:`Deps`), apart.

Every fact a run gathers — the plan, the hits, what ``get_metadata``/``ocr_region`` said about each
image, which images were inspected, the claims and the checks — lives in the LangGraph state, so a
node is a function of its state and can be run alone, replayed or checkpointed. The things a run
*uses* — the MCP tool caller, the LLM, the knobs, the tracer and the clock — are the :class:`Deps`
passed as LangGraph's run context; nothing about a run is kept on them (the tool caller's and the
LLM's usage counters aside, which are the endpoints' own bookkeeping).
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol, TypedDict

from pydantic import BaseModel, Field

from .evidence import EvidenceLine, ImageInfo
from .llm import LLMClient
from .mcp_client import CropView, HitView, MetadataView, OcrView, SearchView
from .planner import Plan
from .schemas import Answer, Checks, Claim, Usage

log = logging.getLogger("imgrag.agent")


class AgentConfig(BaseModel):
    """Knobs of one run; the defaults suit a laptop CPU and a small index."""

    k: int = Field(default=5, ge=1, le=50, description="hits kept per sub-question")
    filters: dict[str, Any] = Field(default_factory=dict, description="search_images filters from --filter")
    inspect_top: int = Field(default=3, ge=1, le=10, description="images inspected per sub-question per round")
    regions_per_image: int = Field(default=2, ge=1, le=6, description="regions re-read with ocr_region per image")
    max_retries: int = Field(default=1, ge=0, le=3, description="retrieve/inspect rounds after a failed self-check")
    max_claims_per_sub: int = Field(default=3, ge=1, le=10)
    crop_scale: float = Field(default=2.0, ge=1.0, le=4.0)
    llm_evidence_lines: int = Field(default=24, ge=4, le=200, description="evidence lines shown to the LLM")
    llm_candidates: int = Field(
        default=4, ge=0, le=10,
        description="per part, the extractive reader's best values (with their quoted lines) offered to the LLM; 0: none",
    )
    keep_crops: bool = Field(default=False, description="crop the best regions even without a vision model")
    linked_per_page: int = Field(
        default=2, ge=0, le=10,
        description="linked pages (a report's X-ray, an SOP's defect photo) read and cited per cited page; 0: links ignored",
    )


class TraceEvent(BaseModel):
    node: str
    round: int
    ms: float
    decisions: list[str] = Field(default_factory=list)


Crop = tuple[list[float], bytes]
"""A region cropped in this run: its box (original-image pixels) and the PNG."""


class AgentState(TypedDict, total=False):
    """One run, all of it. Nodes return the keys they change; they never mutate what they were given."""

    question: str
    round: int
    plan: Plan
    failed_subs: list[int]  # parts (0-based) retrieve/inspect work on this round
    feedback: list[str]  # why the last round's claims failed, for the LLM
    hits: dict[int, list[HitView]]  # part → fused search hits
    images: dict[str, ImageInfo]  # what get_metadata and ocr_region said about each image
    inspected: set[str]  # images inspected in this run: the only ones a citation may name
    ocr_cache: dict[str, OcrView]  # ocr_region results by "image_id|box"
    crops: dict[str, Crop]  # image id → the best region's crop (vision model / --report)
    evidence: dict[int, list[EvidenceLine]]  # part → candidate lines
    claims: list[Claim]
    answer_text: str
    fallback: bool  # the LLM's answer was unusable: the extractive answerer's is shown
    answered_docs: dict[int, list[str]]  # part → documents its extractive claims came from, in order
    checks: Checks
    verdict: Literal["retry", "finalize"]
    trace: Annotated[list[TraceEvent], operator.add]
    timings_ms: dict[str, float]  # node → total ms over the run
    result: Answer


def initial_state(question: str) -> AgentState:
    """The state a run starts from: the question and nothing learned yet."""
    return AgentState(
        question=question, round=0, images={}, inspected=set(), ocr_cache={}, crops={}, answered_docs={},
        checks=Checks(), trace=[], timings_ms={},
    )


class Tools(Protocol):
    """The MCP tools the agent calls (:class:`agent.mcp_client.ToolClient`, or a fake in tests)."""

    usage: Usage
    dropped_args: dict[str, list[str]]

    async def search_images(
        self, query: str, k: int = 10, filters: dict[str, Any] | None = None, mode: str = "hybrid"
    ) -> SearchView: ...

    async def get_metadata(self, image_id: str) -> MetadataView: ...

    async def ocr_region(self, image_id: str, bbox: list[float] | None = None, scale: float | str = "auto") -> OcrView: ...

    async def crop_region(
        self, image_id: str, bbox: list[float], scale: float = 2.0, enhance: bool = False, units: str = "px"
    ) -> CropView: ...


Note = Callable[[str], None]
"""Where a node records a decision (the trace shows them); ``log.debug`` when nobody listens."""


@dataclass(frozen=True)
class Deps:
    """What the nodes call out to. Passed as LangGraph's run context (``ainvoke(..., context=deps)``)."""

    tools: Tools
    llm: LLMClient | None = None
    config: AgentConfig = field(default_factory=AgentConfig)
    tracer: Callable[[TraceEvent], None] | None = None
    clock: Callable[[], float] = time.perf_counter

    @property
    def mode(self) -> Literal["llm", "extractive"]:
        return "llm" if self.llm is not None else "extractive"

    @property
    def verify(self) -> bool:
        """Whether claims are put to the LLM for a verdict."""
        return self.llm is not None and self.llm.config.verify

    @property
    def vision(self) -> str | None:
        """The vision model to show crops to, if any."""
        return self.llm.config.vlm_model if self.llm is not None else None
