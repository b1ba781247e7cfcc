"""*retrieve*: search each part that still needs an answer with several queries and fuse their
rankings (RRF); a second round searches the bare key words and the raw question too."""

from __future__ import annotations

from typing import Any

from ..evidence import squash
from ..mcp_client import HitView, ToolError
from ..planner import SubQuestion
from ..state import AgentState, Deps, Note, log


async def search(deps: Deps, note: Note, query: str, k: int, filters: dict[str, Any], mode: str = "hybrid") -> list[HitView]:
    """The hits of one search; none (and a note) when the tool fails."""
    try:
        return (await deps.tools.search_images(query, k=k, filters=filters or None, mode=mode)).hits
    except ToolError as e:
        note(f"search {query!r} failed: {e}")
        return []


async def retrieve(state: AgentState, deps: Deps, note: Note = log.debug) -> dict[str, Any]:
    plan = state["plan"]
    cfg = deps.config
    rnd = state.get("round", 0)
    hits = dict(state.get("hits", {}))
    k = cfg.k * (2 if rnd else 1)
    for i in state.get("failed_subs", []):
        sub = plan.sub_questions[i]
        queries = list(sub.queries)
        modes = ["hybrid"] * len(queries)
        if sub.entities and not rnd:
            # The names alone as an exact keyword search: a contract number or an English company
            # named in a Chinese question (or the reverse) is what picks the document, and the
            # vector routes lean towards pages in the question's language.
            queries.append(" ".join(sub.entities))
            modes.append("keyword")
        if rnd:
            # A second look: the bare key words as an exact keyword search, and the raw question.
            kw = " ".join([*sub.entities, *[t for t in sub.key_terms if len(t) > 1 or t.isascii()]]).strip()
            for extra, mode in ((kw, "keyword"), (sub.question, "hybrid")):
                if extra and (extra, mode) not in zip(queries, modes):
                    queries.append(extra)
                    modes.append(mode)
        filters = dict(sub.filters)
        fused: dict[str, float] = {}
        first: dict[str, HitView] = {}
        named: list[HitView] = []  # hits of the entity search whose snippet shows the entity
        for q, mode in zip(queries, modes):
            found = await search(deps, note, q, k, filters, mode)
            if not found and filters and set(filters) - set(cfg.filters):
                # A date read from the question may not be on the page as a parsed date: retry without it.
                relaxed = {key: v for key, v in filters.items() if key in cfg.filters}
                found = await search(deps, note, q, k, relaxed, mode)
                if found:
                    note(f"no hits with the question's date filter for {q!r}; searched without it")
            for rank, h in enumerate(found):
                fused[h.image_id] = fused.get(h.image_id, 0.0) + 1.0 / (60 + rank + 1)
                first.setdefault(h.image_id, h)
                if mode == "keyword" and sub.entities and any(squash(e) in squash(h.snippet) for e in sub.entities):
                    named.append(h)
            note(
                f"search[{mode}] {q!r} k={k}{' filters=' + str(filters) if filters else ''}: "
                f"{len(found)} hits" + (f", top {found[0].image_id[:12]} {found[0].snippet[:40]!r}" if found else "")
            )
        merged = sorted(first.values(), key=lambda h: -fused[h.image_id])[:k]
        if named:
            # A page whose matching line names the entity is the document asked about: it goes
            # first, whatever the other queries' rankings (they lean to the question's language).
            ids = {h.image_id for h in named}
            merged = [*dict((h.image_id, h) for h in named).values(), *[h for h in merged if h.image_id not in ids]][:k]
            note(f"sub-question {i + 1}: {len(ids)} page(s) whose snippet names {sub.entities} go first")
        if sub.context_from is not None:
            merged = await context_hits(state, deps, note, i, sub, merged, hits, k)
        if rnd:
            # Keep what earlier rounds found, new images after them.
            seen = {h.image_id for h in hits.get(i, [])}
            merged = [*hits.get(i, []), *[h for h in merged if h.image_id not in seen]]
        hits[i] = merged
        note(f"sub-question {i + 1}: {len(merged)} images after fusing {len(queries)} queries")
    return {"hits": hits}


async def context_hits(
    state: AgentState, deps: Deps, note: Note, i: int, sub: SubQuestion, merged: list[HitView], hits: dict[int, list[HitView]], k: int
) -> list[HitView]:
    """Hits for a part that asks about an earlier part's document: once that part has been
    answered, pages of that document only (searched with a doc_id filter); before, the earlier
    part's best pages first, so the same documents get inspected for both."""
    j = sub.context_from
    assert j is not None
    docs = state.get("answered_docs", {}).get(j, [])
    if docs:
        pinned: list[HitView] = []
        for d in docs:
            found = await search(deps, note, sub.queries[0] if sub.queries else sub.question, k, {**deps.config.filters, "doc_id": d})
            pinned += [h for h in found if h.image_id not in {x.image_id for x in pinned}]
        note(f"sub-question {i + 1}: searched only the document(s) part {j + 1} was answered from: {len(pinned)} page(s)")
        return pinned
    first = hits.get(j, [])[: deps.config.inspect_top]
    ids = {h.image_id for h in first}
    if first:
        note(f"sub-question {i + 1}: asks about part {j + 1}'s document; its top {len(first)} page(s) go first")
    return [*first, *[h for h in merged if h.image_id not in ids]][: max(k, len(first))]
