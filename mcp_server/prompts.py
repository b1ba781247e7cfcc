"""MCP prompts: the three tasks people bring to an image index, written as tool plans a model can follow.

A client shows them as slash commands or a prompt picker (Claude Desktop's "+" menu, ``/mcp`` in
Claude Code); the chosen prompt becomes a user message that names the tools, their arguments and
what to cite, so even a model that has never seen this server uses it the way it works best.

No ``from __future__ import annotations``: the SDK reads the argument descriptions from the signatures.
"""

from typing import Annotated, Any

from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import Field, ValidationError

from imgrag.indexing.limits import MAX_QUERY_CHARS

from .tools import clip

Question = Annotated[str, Field(description="the question, in Chinese or English", min_length=1, max_length=MAX_QUERY_CHARS)]
Document = Annotated[
    str,
    Field(
        description="an image id from search_images, or words that find the document (a title, a party, a number)",
        min_length=1,
        max_length=MAX_QUERY_CHARS,
    ),
]
Aspect = Annotated[str, Field(description="what to compare, e.g. 'parties, amounts and dates' (optional)", max_length=MAX_QUERY_CHARS)]

_RESOLVE = (
    "If it looks like an image id (as search_images returns), call get_metadata on it; otherwise call "
    "search_images with those words and take the best hit whose file name and snippet fit."
)
_CITE = (
    "Cite every statement as [image_id, bbox] and quote the OCR text verbatim in quotes; quote only "
    "text you read with ocr_region, get_metadata or a hit's snippet. Boxes are [x0, y0, x1, y1] in "
    "original-image pixels."
)


def find_and_cite(question: Question) -> str:
    """Answer a question from the indexed images, with each statement cited to an image and its OCR text."""
    return f"""Answer this question from the indexed images, citing the evidence: {question}

1. Call search_images with the question's key words. If it names a year or a date range, pass it as
   filters, e.g. {{"date_from": "2023-01-01", "date_to": "2023-12-31"}}. For names, numbers and ids,
   also try a short query with mode "keyword".
2. For the best two or three hits, crop_region the hit's region bbox at scale 2-3 to look at it, and
   ocr_region the same box to read the exact text. get_metadata gives all of a page's OCR lines when
   the region is not enough.
3. Answer briefly, in the question's language. {_CITE}
4. If nothing you read supports an answer, say so instead of guessing."""


def compare_documents(first: Document, second: Document, aspect: Aspect = "") -> str:
    """Compare two documents point by point, in a table whose cells quote and cite each document."""
    focus = f" Focus on: {aspect}." if aspect.strip() else ""
    return f"""Compare two documents from the indexed images.{focus}
A: {first}
B: {second}

1. Find each one. {_RESOLVE} Pages of one PDF share a doc_id: search again with filters
   {{"doc_id": "..."}} to read a document's other pages.
2. Read what matters for the comparison (parties, dates, amounts, terms, seals and signatures) from
   get_metadata's OCR lines; use ocr_region and crop_region (scale 2-4) for small or unclear print.
3. Answer with a Markdown table, one row per point compared and the columns point | A | B, each cell
   quoting the document. {_CITE} Write "not stated" where a document does not say.
4. End with one or two sentences on the differences that matter."""


def where_is_the_seal(document: Document) -> str:
    """Find the seal (stamp) on a document: which page, where on it, and the text around it."""
    return f"""Find the seal (stamp) on this document and say where it is: {document}

1. {_RESOLVE} When searching, pass filters {{"has_seal": true}} so only pages with a detected seal come back.
2. get_metadata lists the seals the detector found on the page: bbox, colour, shape and confidence.
   If there is none, say that no seal was detected on that page, and check the document's other pages
   (search with filters {{"doc_id": "..."}}).
3. crop_region each seal's bbox, grown by about half its size on every side, at scale 2, to look at
   it; ocr_region the same box to read the text inside and around the seal (often a company name).
4. Answer: the page, where on the page (e.g. bottom right, beside the signature line), the bbox,
   the colour and shape, and the nearby text. {_CITE}"""


PROMPTS = (
    (find_and_cite, "find_and_cite", "Find and cite"),
    (compare_documents, "compare_documents", "Compare two documents"),
    (where_is_the_seal, "where_is_the_seal", "Where is the seal?"),
)


def register_prompts(mcp: Any) -> None:
    """Add the prompts to an ``MCPServer`` (which then advertises the prompts capability)."""
    for fn, name, title in PROMPTS:
        mcp.prompt(name=name, title=title)(fn)


def prompt_error(name: str, err: Exception) -> MCPError:
    """An invalid-params error naming what is wrong with a prompts/get request (the SDK reports
    every prompt failure as an internal error)."""
    cause: BaseException = err.__cause__ or err
    while not isinstance(cause, ValidationError) and cause.__cause__ is not None:
        cause = cause.__cause__
    if not isinstance(cause, ValidationError):
        cause = err.__cause__ or err
    known = {n for _, n, _ in PROMPTS}
    if name not in known:
        shown = clip(name, 81)  # a 200 kB name came back whole
        msg = f"unknown prompt {shown!r} — prompts/list names them: {', '.join(sorted(known))}"
    elif isinstance(cause, ValidationError):
        # a name in loc may be the client's own (an argument the prompt does not take): shortened
        parts = [f"{'.'.join(clip(str(p), 40) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in cause.errors(include_url=False)]
        more = f"; and {len(parts) - 10} more" if len(parts) > 10 else ""
        msg = f"invalid arguments for prompt {name}: " + "; ".join(parts[:10]) + more
    else:
        msg = f"prompt {name}: {cause} — prompts/list shows its arguments"
    return MCPError(code=INVALID_PARAMS, message=msg)
