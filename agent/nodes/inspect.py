"""*inspect*: zoom in. Page-level OCR misses small print, so the best regions of the best pages are
re-read with ``ocr_region`` at a higher scale; a vision model, when configured, is shown a crop."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from ..evidence import (
    REMEDY_LINE,
    EvidenceLine,
    ImageInfo,
    asked_roles,
    best_lines,
    entity_match,
    find_amount,
    find_date,
    following,
    near_bottom,
    next_page,
    next_page_name,
    overlap,
    row_cells,
    squash,
    stored,
    term_coverage,
    title_match,
    typed,
    weighted_coverage,
)
from ..llm import image_part, text_part
from ..mcp_client import HitView, OcrView, ToolError
from ..planner import SubQuestion
from ..state import AgentConfig, AgentState, Crop, Deps, Note, log


def expand(b: tuple[float, float, float, float], w: int, h: int, *, full_row: bool, down: float = 0.0) -> list[float]:
    """A line box grown into the band a re-read should see: some margin around the glyphs, the whole
    row when the value may sit to the right, and optionally the next row."""
    x0, y0, x1, y1 = b
    lh = max(8.0, y1 - y0)
    if full_row and w:
        x0, x1 = 0.03 * w, 0.97 * w
    else:
        x0, x1 = x0 - 0.6 * lh, x1 + 0.6 * lh
    y0, y1 = y0 - 0.45 * lh, y1 + 0.45 * lh + down * lh
    if w and h:
        x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
    return [x0, y0, x1, y1]


async def image_info(deps: Deps, note: Note, images: dict[str, ImageInfo], hit: HitView) -> ImageInfo | None:
    """What ``get_metadata`` says about a hit's image (fetched once per run, kept in ``images``)."""
    if hit.image_id in images:
        return images[hit.image_id]
    try:
        md = await deps.tools.get_metadata(hit.image_id)
    except ToolError as e:
        note(f"get_metadata {hit.image_id[:12]} failed: {e}")
        return None
    seals = [s for s in md.seals if isinstance(s, dict) and len(s.get("bbox", [])) == 4]
    info = ImageInfo(
        image_id=hit.image_id,
        path=md.source or hit.path or hit.file,
        file=hit.file or md.source.rsplit("/", 1)[-1],
        page=md.page or hit.page,
        n_pages=md.n_pages or hit.n_pages,
        width=md.width or hit.width,
        height=md.height or hit.height,
        ocr_text=md.ocr_text,
        lines=[
            EvidenceLine(image_id=hit.image_id, text=ln.text, bbox=ln.bbox, confidence=ln.confidence, source="metadata")
            for ln in md.ocr_lines
        ],
        doc_id=hit.doc_id,
        seals=[tuple(s["bbox"]) for s in seals],  # type: ignore[misc]
        seal_labels=[" ".join(str(s.get(k, "")) for k in ("color", "shape")).strip() for s in seals],
        caption=md.caption or hit.caption,
        links=md.links or hit.links,
    )
    images[hit.image_id] = info
    return info


def regions(config: AgentConfig, sub: SubQuestion, hit: HitView, info: ImageInfo) -> list[list[float]]:
    """Where to look closer: the hit's region, then the page lines that best match the
    sub-question (for a date question, lines with a date; for a party, lines with a role)."""
    if sub.intent == "seal":
        # The detected seals themselves (cropped for the report or a vision model; not re-read).
        return [expand(b, info.width, info.height, full_row=False) for b in info.seals[: config.regions_per_image]]
    want_row = sub.intent in ("party", "date", "amount", "section")
    roles = asked_roles(sub)
    boxes: list[list[float]] = []
    if hit.region is not None:
        b = hit.region.bbox
        row = want_row and (b[3] - b[1]) < 0.05 * max(1, info.height)
        boxes.append(expand(b, info.width, info.height, full_row=row))
    scored: list[tuple[float, EvidenceLine]] = []
    for ln in info.lines:
        if ln.bbox is None:
            continue
        s = term_coverage(sub.key_terms, ln.text)
        if sub.intent == "date" and find_date(ln.text):
            s += 0.8
        elif sub.intent == "amount" and find_amount(ln.text):
            s += 0.8
        elif sub.intent == "remedy" and REMEDY_LINE.search(ln.text):
            s += 0.8
        elif sub.intent == "section":
            t, _ = title_match(sub, ln.text)
            s = t if t >= 0.5 else 0.0
        elif sub.intent == "party" and roles:
            label = re.split(r"[:：]", ln.text, maxsplit=1)[0]
            s = 0.5 * s + (1.0 if any(r in squash(label) for r in roles) else 0.0)
        if s > 0:
            scored.append((s, ln))
    scored.sort(key=lambda t: -t[0])
    for _, ln in scored:
        assert ln.bbox is not None
        down = 1.6 if ln.text.rstrip().endswith((":", "：")) else 0.0
        box = expand(ln.bbox, info.width, info.height, full_row=want_row, down=down)
        if all(overlap(box, b) < 0.6 for b in boxes):
            boxes.append(box)
        if len(boxes) >= config.regions_per_image:
            break
    return boxes[: config.regions_per_image]


def _ocr_key(image_id: str, box: list[float] | None) -> str:
    return f"{image_id}|{','.join(str(round(v)) for v in box) if box else 'page'}"


async def inspect(state: AgentState, deps: Deps, note: Note = log.debug) -> dict[str, Any]:
    plan = state["plan"]
    cfg = deps.config
    rnd = state.get("round", 0)
    evidence = dict(state.get("evidence", {}))
    # This node's own copies: what it learns is returned, the state it was given stays as it was.
    images = {
        iid: info.model_copy(update={"reread": list(info.reread), "vlm_notes": list(info.vlm_notes)})
        for iid, info in state.get("images", {}).items()
    }
    inspected = set(state.get("inspected", set()))
    ocr_cache = dict(state.get("ocr_cache", {}))
    crops = dict(state.get("crops", {}))
    for i in state.get("failed_subs", []):
        sub = plan.sub_questions[i]
        lines = list(evidence.get(i, [])) if rnd else []
        hits = state["hits"].get(i, [])
        # In a retry, look at images not inspected for this part yet, then re-read the rest wider.
        seen = {ln.image_id for ln in lines}
        todo = [h for h in hits if h.image_id not in seen][: cfg.inspect_top]
        if not todo and hits:
            todo = hits[: cfg.inspect_top]
        # One round trip's wait for all of them: the server reads them on its workers side by side.
        got = await asyncio.gather(*(image_info(deps, note, images, h) for h in todo))
        infos = {h.image_id: info for h, info in zip(todo, got, strict=True)}
        if sub.entities:
            # get_metadata is cheap, re-reading is not: when some page names the entity, skip the
            # pages that do not.
            match = {iid: entity_match(sub.entities, info) for iid, info in infos.items() if info is not None}
            if any(v == 1.0 for v in match.values()):
                skipped = [iid for iid, v in match.items() if v == 0.0]
                if skipped:
                    note(f"sub-question {i + 1}: {len(skipped)} page(s) without {sub.entities} not re-read")
                todo = [h for h in todo if match.get(h.image_id, 0.0) > 0.0]
        # The extractive answerer quotes only what the index holds (a quote must be the stored OCR
        # text at the box it cites), so a re-read can never change its answer: it re-reads nothing.
        # With an LLM, a typed question in the first round re-reads only the lines that can change
        # the answer.
        reread = deps.llm is not None and sub.intent != "seal"
        worth = reread_plan(sub, [infos[h.image_id] for h in todo if infos.get(h.image_id) is not None]) if reread and not rnd else None
        for rank, hit in enumerate(todo):
            info = infos.get(hit.image_id)
            if info is None:
                continue
            rank = next((r for r, h in enumerate(hits) if h.image_id == hit.image_id), rank)
            boxes: list[list[float] | None] = list(regions(cfg, sub, hit, info))
            if rnd and hit.image_id in seen and sub.intent != "seal":
                boxes = [None]  # a retry on a known image: read the whole page at a higher scale
            elif worth is not None:
                # Only the poorly read lines near the best answering lines (a failed check still
                # re-reads the whole page in the next round).
                boxes = [expand(ln.bbox, info.width, info.height, full_row=False)
                         for ln in worth.get(hit.image_id, []) if ln.bbox is not None][: cfg.regions_per_image]
                if not boxes:
                    note(f"sub-question {i + 1}: {info.file or hit.image_id[:12]} p{info.page}: page OCR is clear where it answers, no re-read")
            read = 0
            # A seal question is answered from the detector's boxes (get_metadata): nothing to re-read.
            for box in boxes if reread else []:
                key = _ocr_key(hit.image_id, box)
                try:
                    ocr: OcrView
                    if key in ocr_cache:
                        ocr = ocr_cache[key]
                    else:
                        ocr = ocr_cache[key] = await deps.tools.ocr_region(hit.image_id, box, "auto")
                except ToolError as e:
                    note(f"ocr_region {hit.image_id[:12]} {box} failed: {e}")
                    continue
                new = [
                    EvidenceLine(image_id=hit.image_id, text=ln.text, bbox=ln.bbox, confidence=ln.confidence, source="ocr_region", rank=rank)
                    for ln in ocr.lines
                    if ln.text.strip()
                ]
                info.reread.extend(new)
                lines.extend(new)
                read += len(new)
                inspected.add(hit.image_id)
            # Page-level lines that match, and the hit's own snippet, stay candidates too.
            for ln in info.lines:
                # A section number often has its own OCR box beside the title: keep every line.
                if (
                    sub.intent == "section"
                    or term_coverage(sub.key_terms, ln.text) > 0
                    or (sub.intent == "date" and find_date(ln.text))
                    or (sub.intent == "remedy" and REMEDY_LINE.search(ln.text))
                ):
                    lines.append(ln.model_copy(update={"rank": rank}))
            if hit.snippet:
                # The search's own quote, as the stored line it was taken from (its box, not its block's).
                quote = EvidenceLine(image_id=hit.image_id, text=hit.snippet, bbox=hit.region.bbox if hit.region else None,
                                     source="snippet", rank=rank)
                if (line := stored(quote, info)) is not None:
                    lines.append(line)
            inspected.add(hit.image_id)
            if rank < 2 and typed(sub) is not None:
                if (after := await fetch_next_page(deps, note, images, sub, info)) is not None:
                    inspected.add(after.image_id)
            note(
                f"sub-question {i + 1}: inspected {info.file or hit.image_id[:12]} p{info.page}: "
                + (f"re-read {len(boxes)} region(s) → {read} lines" if reread else "quoting the stored page OCR, nothing re-read")
            )
            # ocr_region already zooms server-side; an explicit crop is for eyes: the vision model's
            # (best page of each part only) or the caller's (keep_crops).
            wants_crop = (deps.vision and hit is todo[0]) or cfg.keep_crops
            first = boxes[0] if boxes else None
            if wants_crop and first is not None:
                await look(deps, note, crops, sub, hit.image_id, first, info)
        evidence[i] = lines
        await read_links(deps, note, images, inspected, [h.image_id for h in todo])
    return {"evidence": evidence, "images": images, "inspected": inspected, "ocr_cache": ocr_cache, "crops": crops}


async def read_links(deps: Deps, note: Note, images: dict[str, ImageInfo], inspected: set[str], ids: list[str]) -> None:
    """Read the pages linked to the inspected ones (the X-ray of a report, the defect photo of an SOP
    page): a question about one side often needs the other cited too ("what does the report say
    about the nodule in this CT?"), and the answer may only cite what this run looked at. Metadata
    only (caption, tags, label lines): the linked page is cited for what identifies it."""
    n = deps.config.linked_per_page
    for iid in ids:
        info = images.get(iid)
        if info is None or iid not in inspected or not n:
            continue
        for ln in info.links[:n]:
            got = await image_info(deps, note, images, HitView(image_id=ln.image_id, file=ln.file, page=ln.page))
            if got is not None and ln.image_id not in inspected:
                inspected.add(ln.image_id)
                note(f"read {got.file or ln.image_id[:12]} p{got.page}, linked to {info.file or iid[:12]} ({ln.why})")


async def look(deps: Deps, note: Note, crops: dict[str, Crop], sub: SubQuestion, image_id: str, box: list[float], info: ImageInfo) -> None:
    """Crop the region (kept in ``crops`` for the report) and, with a vision model, ask it about the
    crop (its reply goes to ``info.vlm_notes``, shown to the LLM with the evidence)."""
    try:
        crop = await deps.tools.crop_region(image_id, box, scale=deps.config.crop_scale)
    except ToolError as e:
        note(f"crop_region {image_id[:12]} failed: {e}")
        return
    if not crop.png:
        return
    crops.setdefault(image_id, (list(crop.bbox or box), crop.png))
    note(f"cropped {image_id[:12]} {[round(v) for v in (crop.bbox or box)]} → {crop.width}x{crop.height}px")
    if deps.llm is None or not deps.vision:
        return
    messages = [
        {"role": "system", "content": "You read document crops. Transcribe the text relevant to the question exactly; say 'none' if there is none."},
        {"role": "user", "content": [text_part(f"Question: {sub.question}"), image_part(crop.png)]},
    ]
    try:
        reply = (await deps.llm.chat(messages, max_tokens=160, model=deps.vision, purpose="vision")).strip()
    except Exception as e:  # the vision model is an aid, never a requirement
        note(f"vision model failed on {image_id[:12]}: {e}")
        return
    if reply:
        info.vlm_notes.append(reply[:400])
        note(f"vision model on {image_id[:12]}: {reply[:80]!r}")


async def fetch_next_page(deps: Deps, note: Note, images: dict[str, ImageInfo], sub: SubQuestion, info: ImageInfo) -> ImageInfo | None:
    """When the line that best matches the question is at the bottom of the page, its answer may
    start the next page: find that page (the same document's next page, or the next file of a
    page-per-file book) with a filtered search and read its metadata, so the answerer can look at
    its first rows."""
    lines = [ln for ln in info.lines if ln.bbox is not None]
    best = max(lines, key=lambda ln: weighted_coverage(sub.key_terms, ln.text), default=None)
    if best is None or weighted_coverage(sub.key_terms, best.text) <= 0 or not near_bottom(best, lines):
        return None
    if (known := next_page(info, images)) is not None:
        return known
    extra: dict[str, Any] | None = None
    if info.n_pages > 1:
        if info.page >= info.n_pages or not info.doc_id:
            return None
        extra = {"doc_id": info.doc_id}
    elif (nxt := next_page_name(info.path)) is not None:
        extra = {"path_prefix": nxt}
    else:
        return None
    query = sub.queries[0] if sub.queries else sub.question
    try:
        found = await deps.tools.search_images(query, k=10, filters={**deps.config.filters, **extra}, mode="hybrid")
    except ToolError as e:
        note(f"next page of {info.file} p{info.page}: search failed: {e}")
        return None
    hit = next((h for h in found.hits if ("doc_id" in extra and h.page == info.page + 1) or h.path == extra.get("path_prefix")), None)
    if hit is None:
        return None
    got = await image_info(deps, note, images, hit)
    if got is not None:
        note(f"the best line of {info.file} p{info.page} ends the page: read the next page {got.file} p{got.page}")
    return got


# Page-OCR lines read below this confidence are usually garbled (often a code block or
# small print): the only lines a re-read at a higher scale is likely to change.
LOW_CONFIDENCE = 0.8


def reread_plan(sub: SubQuestion, infos: list[ImageInfo]) -> dict[str, list[EvidenceLine]] | None:
    """For a typed question, the page-OCR lines whose ``ocr_region`` re-read could change the answer:
    the poorly read lines on the row of, or in the three rows after, the best answering line of the
    best two pages (where a command or value introduced by that line would be). Every other line
    would be read again as it already is, at seconds a region. None (re-read as before) for the
    contract intents, whose readers need the value right of a label at a higher scale."""
    if typed(sub) is None or not infos:
        return None
    images = {info.image_id: info for info in infos}
    evidence = [ln.model_copy(update={"rank": r}) for r, info in enumerate(infos) for ln in info.lines if ln.text.strip()]
    plan: dict[str, list[EvidenceLine]] = {}
    for sc in best_lines(sub, evidence, images)[:2]:
        info = images.get(sc.line.image_id)
        if info is None or sc.line.bbox is None:
            continue
        pool = [ln for ln in info.lines if ln.bbox is not None]
        near = [sc.line, *following(sc.line, pool, 3), *row_cells(sc.line, pool, -1), *row_cells(sc.line, pool, 1)]
        bad = [ln for ln in near if ln.confidence < LOW_CONFIDENCE and len(squash(ln.text)) >= 2]
        if bad:
            plan[info.image_id] = list({ln.bbox: ln for ln in bad}.values())
    return plan
