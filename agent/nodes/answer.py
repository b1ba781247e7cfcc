"""*answer*: claims that cite image ids and verbatim OCR snippets — from the LLM, or from the
extractive answerer, which quotes the best evidence lines (and answers seal questions from the
index's seal detector)."""

from __future__ import annotations

import re
from typing import Any

from ..evidence import (
    EvidenceLine,
    ImageInfo,
    Scored,
    best_lines,
    entity_match,
    find_date,
    label_for,
    overlap,
    page_lang,
    squash,
    term_coverage,
    typed,
)
from ..llm import LLMOutputError
from ..planner import Plan, SubQuestion
from ..schemas import Citation, Claim, LLMAnswer
from ..spans import type_label
from ..state import AgentState, Deps, Note, log


def citation(images: dict[str, ImageInfo], line: EvidenceLine) -> Citation:
    info = images.get(line.image_id)
    return Citation(
        image_id=line.image_id,
        path=info.path if info else "",
        page=info.page if info else 1,
        bbox=tuple(round(v, 1) for v in line.bbox) if line.bbox else None,  # type: ignore[arg-type]
        snippet=line.text.strip(),
    )


def linked_citation(partner: ImageInfo, quoted: str, why: str) -> Citation:
    """The citation of a page linked to a quoted one, by what identifies it: the line that prints the
    link key (a photo's "P/N: BRK-5269" label, a report's accession number), else its caption (a
    DICOM image's, from its tags), else its first line, else its file name."""
    _, _, value = why.partition("=")
    lines = [ln for ln in [*partner.lines, *partner.reread] if ln.text.strip()]
    line = next((ln for ln in lines if value and squash(value) in squash(ln.text)), None)
    if line is None and not partner.caption.strip() and lines:
        line = lines[0]
    snippet = line.text.strip() if line is not None else (partner.caption.strip() or partner.file)
    bbox = tuple(round(v, 1) for v in line.bbox) if line is not None and line.bbox else None
    return Citation(image_id=partner.image_id, path=partner.path, page=partner.page, bbox=bbox, snippet=snippet,  # type: ignore[arg-type]
                    kind="linked", linked_to=quoted, why=why)


def cite_links(claims: list[Claim], images: dict[str, ImageInfo], inspected: set[str], per_page: int, note: Note = log.debug) -> list[Claim]:
    """Each claim also cites the pages linked to the pages it quotes, where this run read them: the
    report sentence comes with its X-ray, the SOP step with the photo of the defect it fixes (and the
    other way round), so an answer that needs both sides names both."""
    out: list[Claim] = []
    for claim in claims:
        cits = list(claim.citations)
        for cit in claim.citations:
            info = images.get(cit.image_id)
            if info is None or cit.kind == "linked":
                continue
            for ln in info.links[:per_page]:
                partner = images.get(ln.image_id)
                if partner is None or ln.image_id not in inspected or any(c.image_id == ln.image_id for c in cits):
                    continue
                cits.append(linked_citation(partner, cit.image_id, ln.why))
                note(f"{claim.text[:40]!r} also cites {partner.file or ln.image_id[:12]}, linked to {info.file} ({ln.why})")
        out.append(claim.model_copy(update={"citations": cits}) if len(cits) > len(claim.citations) else claim)
    return out


def doc_of(images: dict[str, ImageInfo], image_id: str) -> str:
    """The document an image is a page of (the image itself when the index knows no document)."""
    info = images.get(image_id)
    return (info.doc_id if info else "") or image_id


def lang_of(images: dict[str, ImageInfo], scored: Scored) -> str:
    info = images.get(scored.line.image_id)
    return page_lang(info) if info is not None else ""


def ranked_lines(state: AgentState, i: int, sub: SubQuestion, note: Note = log.debug) -> list[Scored]:
    """Part ``i``'s best answering line per page, best first (typed spans for a typed question),
    pages that name the question's entity ahead of all others: what the extractive answer quotes
    and what the LLM is offered as candidates."""
    images = state.get("images", {})
    ranked = best_lines(sub, state.get("evidence", {}).get(i, []), images)
    if sub.entities:
        # Pages that name the question's entity beat pages that do not, whatever their lines say.
        named = {sc.line.image_id for sc in ranked if sc.line.image_id in images
                 and entity_match(sub.entities, images[sc.line.image_id]) == 1.0}
        if named and len(named) < len({sc.line.image_id for sc in ranked}):
            note(f"sub-question {i + 1}: only pages naming {sub.entities} kept")
            ranked = [sc for sc in ranked if sc.line.image_id in named]
    return ranked


def extractive(state: AgentState, deps: Deps, note: Note = log.debug) -> tuple[list[Claim], str, dict[int, list[str]]]:
    """Claims quoting the best evidence line(s) of each part, the note that heads such an answer,
    and the documents each part was answered from (a later part about "that contract" must be
    answered from the same ones)."""
    plan = state["plan"]
    images = state.get("images", {})
    max_claims = deps.config.max_claims_per_sub
    claims: list[Claim] = []
    answered: dict[int, list[str]] = {}
    for i, sub in enumerate(plan.sub_questions):
        # The documents part i must be answered from (those of the part it inherits its subject
        # from), or None when it stands alone.
        allowed = (answered.get(sub.context_from) or None) if sub.context_from is not None else None
        if sub.intent == "seal":
            got = seal_claims(state, deps, note, i, sub, allowed)
            claims += got
            if got:
                answered[i] = list(dict.fromkeys(doc_of(images, c.citations[0].image_id) for c in got if c.citations))
            continue
        ranked = ranked_lines(state, i, sub, note)
        if allowed is not None:
            # Same document as the part this one inherits its subject from: the best line of each
            # of that part's documents, in that part's order.
            by_doc: dict[str, Scored] = {}
            for sc in ranked:
                by_doc.setdefault(doc_of(images, sc.line.image_id), sc)
            ranked = [by_doc[d] for d in allowed if d in by_doc]
            if not ranked:
                note(f"sub-question {i + 1}: nothing in the document(s) part {sub.context_from + 1} was answered from")  # type: ignore[operator]
                continue
        if not ranked:
            note(f"sub-question {i + 1}: no evidence line answers it")
            continue
        top = ranked[0].score
        atype = typed(sub)
        if allowed is not None:
            chosen: list[Scored] = ranked[:max_claims]
        elif atype is not None:
            # A typed answer is one value: other pages are cited only when they give the same one
            # (a list: nearly as well), not because they share words with the question; and not
            # the same page of the manual in the other language.
            lang = lang_of(images, ranked[0])
            chosen = [s for s in ranked if lang_of(images, s) == lang and (
                s.score >= top - 0.1 if atype == "list" else s.score >= top - 0.15 and squash(s.value) == squash(ranked[0].value))][:max_claims]
        else:
            chosen = [s for s in ranked if s.score >= top - 0.15][:max_claims]
        answered[i] = list(dict.fromkeys(doc_of(images, s.line.image_id) for s in chosen))
        label = type_label(atype, plan.lang == "zh") if atype is not None else label_for(sub)
        for s in chosen:
            info = images.get(s.line.image_id)
            where = f" ({info.file} p{info.page})" if len(chosen) > 1 and info else ""
            cits = [citation(images, s.snippet_line)]
            if s.snippet_line is not s.line and s.line.text.strip():
                cits.insert(0, citation(images, s.line))
            claims.append(Claim(text=f"{label}: {s.value}{where}", value=s.value, citations=cits, sub_question=sub.question))
            note(f"sub-question {i + 1}: {s.value!r} from {s.line.image_id[:12]} (score {s.score}, {s.why})")
    if deps.llm is None:
        head = "Extractive answer (no LLM configured): each line below is quoted from the OCR text of the cited image."
        if plan.lang == "zh":
            head = "抽取式回答（未配置 LLM）：以下每一行均摘自所引图像的 OCR 文本。"
    else:
        head = "Extractive answer (the LLM's reply gave no verifiable claim): each line below is quoted from the OCR text of the cited image."
        if plan.lang == "zh":
            head = "抽取式回答（LLM 的回复没有可核实的论断）：以下每一行均摘自所引图像的 OCR 文本。"
    return claims, head, answered


def seal_claims(state: AgentState, deps: Deps, note: Note, i: int, sub: SubQuestion, allowed: list[str] | None) -> list[Claim]:
    """Where the seals are, from the seal detector (get_metadata) on the document the part is
    about: the pages of the best-matching document (the named entity, then the search rank), one
    claim per page with seals citing each seal's box; a page without one gets a claim saying no
    seal was detected on it."""
    images = state.get("images", {})
    inspected = state.get("inspected", set())
    zh = bool(re.search(r"[\u4e00-\u9fff]", sub.question))
    cands = [
        (rank, images[h.image_id])
        for rank, h in enumerate(state.get("hits", {}).get(i, []))
        if h.image_id in images and h.image_id in inspected
    ]
    if allowed is not None:
        cands = [(r, info) for r, info in cands if doc_of(images, info.image_id) in allowed]
    if not cands:
        note(f"sub-question {i + 1}: no inspected page to look for seals on")
        return []
    match = {info.image_id: entity_match(sub.entities, info) for _, info in cands}
    _, best = min(cands, key=lambda c: (-match[c[1].image_id], -bool(c[1].seals), c[0]))
    doc = doc_of(images, best.image_id)
    pages = sorted(
        {info.image_id: info for _, info in cands if doc_of(images, info.image_id) == doc and match[info.image_id] >= match[best.image_id]}.values(),
        key=lambda info: info.page,
    )
    with_seals = [p for p in pages if p.seals]
    label = label_for(sub)
    claims: list[Claim] = []
    for info in with_seals[: deps.config.max_claims_per_sub]:
        cits = [seal_citation(info, box) for box in sorted(info.seals, key=lambda b: (b[1], b[0]))]
        boxes = "; ".join(
            "[" + ", ".join(f"{round(v, 1):.0f}" for v in box) + "]" + (f" ({lab})" if lab else "")
            for box, lab in sorted(zip(info.seals, info.seal_labels or [""] * len(info.seals)), key=lambda t: (t[0][1], t[0][0]))
        )
        n = len(info.seals)
        text = (
            f"{label}：{info.file} 第{info.page}页，检测到{n}枚印章，位于 {boxes}"
            if zh
            else f"{label}: {n} seal{'s' if n > 1 else ''} detected on {info.file} p{info.page} at {boxes}"
        )
        claims.append(Claim(text=text, citations=cits, sub_question=sub.question, kind="seal"))
        note(f"sub-question {i + 1}: {n} seal(s) on {info.file} p{info.page} from the seal detector")
    if not with_seals:
        info = pages[0]
        line = identifying_line(sub, info)
        where = f"{info.file}" + (f" p{info.page}" if len(pages) == 1 else f" ({len(pages)} pages)")
        text = f"{label}：未在 {where} 上检测到印章" if zh else f"{label}: no seal was detected on {where}"
        cits = [citation(images, line)] if line is not None else []
        claims.append(Claim(text=text, citations=cits, sub_question=sub.question, kind="no_seal"))
        note(f"sub-question {i + 1}: the seal detector found no seal on {where}")
    return claims


def identifying_line(sub: SubQuestion, info: ImageInfo) -> EvidenceLine | None:
    """A line that shows which document a page is: one naming the question's entity, else its
    first line (usually the title)."""
    lines = [ln for ln in info.lines if ln.text.strip()]
    for e in sub.entities:
        for ln in lines:
            if squash(e) in squash(ln.text):
                return ln
    return lines[0] if lines else None


def seal_citation(info: ImageInfo, box: tuple[float, float, float, float]) -> Citation:
    """A seal's box, quoting the page OCR line nearest to it (often the signature line it covers)."""

    def dist(ln: EvidenceLine) -> tuple[float, float]:
        assert ln.bbox is not None
        dx = max(0.0, max(box[0], ln.bbox[0]) - min(box[2], ln.bbox[2]))
        dy = max(0.0, max(box[1], ln.bbox[1]) - min(box[3], ln.bbox[3]))
        return (dx * dx + dy * dy) ** 0.5, -overlap(list(box), list(ln.bbox))

    lines = [ln for ln in info.lines if ln.bbox is not None and ln.text.strip()]
    near = min(lines, key=dist) if lines else None
    return Citation(
        image_id=info.image_id,
        path=info.path,
        page=info.page,
        bbox=tuple(round(v, 1) for v in box),  # type: ignore[arg-type]
        snippet=near.text.strip() if near is not None else "",
        kind="seal",
    )


def llm_candidates(state: AgentState, deps: Deps, note: Note = log.debug) -> dict[int, list[Scored]]:
    """Per part, the extractive reader's best values (one per page, best first, at most
    ``llm_candidates``): the same typed spans and quoted lines the extractive answer is built from,
    offered to the LLM to choose among. Seal parts have none: the seal detector answers those."""
    out: dict[int, list[Scored]] = {}
    if deps.config.llm_candidates == 0:
        return out
    for i, sub in enumerate(state["plan"].sub_questions):
        if sub.intent != "seal" and (ranked := ranked_lines(state, i, sub, note)):
            out[i] = ranked[: deps.config.llm_candidates]
    return out


def evidence_blocks(state: AgentState, deps: Deps, candidates: dict[int, list[Scored]] | None = None) -> list[tuple[ImageInfo, list[EvidenceLine]]]:
    """Evidence for the LLM: the candidates' quoted lines first (a value read from the row under a
    line that shares the question's words shares none itself), then the best lines by the part's
    terms, within ``llm_evidence_lines``."""
    plan = state["plan"]
    images = state.get("images", {})
    seeds = [ln for scored in (candidates or {}).values() for sc in scored for ln in (sc.line, sc.snippet_line)]
    ranked: list[tuple[float, EvidenceLine]] = []
    for i, sub in enumerate(plan.sub_questions):
        for ln in state.get("evidence", {}).get(i, []):
            if ln.source == "snippet":
                continue
            s = term_coverage(sub.key_terms, ln.text) + (0.5 if sub.intent == "date" and find_date(ln.text) else 0.0)
            ranked.append((s - 0.05 * ln.rank + (0.05 if ln.source == "ocr_region" else 0.0), ln))
    ranked.sort(key=lambda t: -t[0])
    picked: dict[str, list[EvidenceLine]] = {}
    seen: set[tuple[str, str]] = set()
    for n, ln in enumerate([*seeds, *(ln for _, ln in ranked)]):
        key = (ln.image_id, squash(ln.text))
        if key in seen or not key[1]:
            continue
        if n >= len(seeds) and len(seen) >= deps.config.llm_evidence_lines:
            break
        seen.add(key)
        picked.setdefault(ln.image_id, []).append(ln)
    return [(images[i], sorted(lines, key=lambda ln: (ln.bbox or (0, 0, 0, 0))[1])) for i, lines in picked.items() if i in images]


def candidate_text(plan: Plan, candidates: dict[int, list[Scored]], images: dict[str, ImageInfo]) -> str:
    """The parts and their candidates as the LLM reads them: the value, the line it is quoted from
    and its image id; a value read from the row under its context line names both lines."""
    zh = plan.lang == "zh"
    out: list[str] = []
    for i, sub in enumerate(plan.sub_questions):
        atype = typed(sub)
        wants = f" (wants a {type_label(atype, False).lower()})" if atype is not None else ""
        out.append(f"Part {i + 1}: {sub.question}{wants}")
        for n, sc in enumerate(candidates.get(i, []), 1):
            label = type_label(atype, zh) if atype is not None else label_for(sub)
            info = images.get(sc.line.image_id)
            where = f"{sc.line.image_id}" + (f" ({info.file} p{info.page})" if info else "")
            quote = f'"{sc.snippet_line.text.strip()}"'
            if sc.snippet_line is not sc.line and sc.line.text.strip():
                quote = f'"{sc.line.text.strip()}" then {quote}'
            out.append(f"  candidate {n}: {label}: {sc.value} | quoted from {quote} | image_id {where}")
    return "\n".join(out)


def resolve_image(cited: str, blocks: list[tuple[ImageInfo, list[EvidenceLine]]]) -> str:
    """The evidence block a cited id means: itself, else the one block whose id starts with it or
    whose file name it is (small models cut long ids short or cite the file). Only ids shown in this
    run resolve; the self-check still requires the page to have been inspected."""
    cited = cited.strip()
    ids = [info.image_id for info, _ in blocks]
    if cited in ids or not cited:
        return cited
    near = [info.image_id for info, _ in blocks if (len(cited) >= 6 and info.image_id.startswith(cited)) or cited == info.file]
    return near[0] if len(near) == 1 else cited


async def llm_answer(state: AgentState, deps: Deps, note: Note = log.debug) -> tuple[list[Claim], str]:
    """The LLM's claims over the evidence, shown as ``ocr_region`` tool results, with the extractive
    reader's candidates per part; each citation is resolved to the stored line it quotes (path,
    page, box) where one matches, and a claim's value is kept for the self-check to find quoted."""
    assert deps.llm is not None
    plan = state["plan"]
    images = state.get("images", {})
    cands = llm_candidates(state, deps, note)
    blocks = evidence_blocks(state, deps, cands)
    if not blocks:
        return [], ""
    system = (
        "You answer questions about scanned documents using only the evidence returned by the ocr_region tool. "
        "Each part of the question lists candidate answers read from that evidence: a value and the line it is quoted from. "
        "For each part, give one claim: choose the candidate that answers it (or another value printed in the evidence), "
        "put the value alone in the claim's value field, and cite the image_id and the line it is quoted from, copied verbatim. "
        "Never invent ids or text. If the evidence does not answer the question, say so and give no claims. "
        f"Answer in {'Chinese' if plan.lang == 'zh' else 'English'}."
    )
    user = f"Question: {plan.question}\n{candidate_text(plan, cands, images)}"
    if state.get("feedback"):
        user += "\nYour previous answer failed verification:\n" + "\n".join(f"- {f}" for f in state["feedback"])
    calls, results = [], []
    for n, (info, lines) in enumerate(blocks):
        call_id = f"call_{n + 1}"
        calls.append({"id": call_id, "type": "function", "function": {"name": "ocr_region", "arguments": f'{{"image_id": "{info.image_id}"}}'}})
        body = f"image_id: {info.image_id}\nfile: {info.file} page {info.page}\n" + "\n".join(f"- {ln.text}" for ln in lines)
        if info.vlm_notes:
            body += "\nvision model: " + " / ".join(info.vlm_notes)
        results.append({"role": "tool", "tool_call_id": call_id, "content": body})
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
        {"role": "assistant", "content": None, "tool_calls": calls},
        *results,
    ]
    note(f"LLM offered {sum(len(v) for v in cands.values())} candidate(s) and {sum(len(ls) for _, ls in blocks)} evidence line(s)")
    out = await deps.llm.structured(messages, LLMAnswer, purpose="answer")
    claims: list[Claim] = []
    for c in out.claims:
        cits: list[Citation] = []
        for cit in c.citations:
            image_id = resolve_image(cit.image_id, blocks)
            line = find_line(images, image_id, cit.snippet)
            if line is not None:
                cits.append(citation(images, line).model_copy(update={"snippet": cit.snippet.strip()}))
            else:
                info = images.get(image_id)
                cits.append(
                    Citation(image_id=image_id, path=info.path if info else "", page=info.page if info else 1, snippet=cit.snippet.strip())
                )
        unique = [x for n, x in enumerate(cits) if x not in cits[:n]]
        text, value = c.text.strip(), c.value.strip()
        if value and squash(value) not in squash(text):
            text = f"{text} ({value})" if text else value
        claims.append(Claim(text=text, value=value, citations=unique, sub_question=match_sub(plan, f"{text} {value}")))
    note(f"LLM answer: {len(claims)} claim(s), {sum(len(c.citations) for c in claims)} citation(s), values {[c.value for c in claims]}")
    return claims, out.answer.strip()


def find_line(images: dict[str, ImageInfo], image_id: str, snippet: str) -> EvidenceLine | None:
    """The stored page-OCR line of that image that contains the snippet (its box is the citation's);
    None when no single line does (the quote is then checked against the whole page's OCR text)."""
    info = images.get(image_id)
    s = squash(snippet)
    if info is None or not s:
        return None
    for ln in info.lines:
        if s in squash(ln.text):
            return ln
    return None


def match_sub(plan: Plan, text: str) -> str:
    """The sub-question a free-text claim most likely answers (by shared terms)."""
    if len(plan.sub_questions) == 1:
        return plan.sub_questions[0].question
    best = max(plan.sub_questions, key=lambda s: term_coverage(s.key_terms, text))
    return best.question


async def answer(state: AgentState, deps: Deps, note: Note = log.debug) -> dict[str, Any]:
    fallback = False
    update: dict[str, Any] = {}
    if deps.llm is not None:
        try:
            claims, text = await llm_answer(state, deps, note)
        except LLMOutputError as e:
            note(f"LLM answer unusable ({e.message}); falling back to the extractive answerer")
            claims, text, update["answered_docs"] = extractive(state, deps, note)
            fallback = True
        if not claims and not fallback:
            note(f"LLM gave no checkable claim (its text: {text[:60]!r}); using the extractive answerer")
            claims, text2, update["answered_docs"] = extractive(state, deps, note)
            if claims:
                text, fallback = text2, True  # the LLM's uncited text is not shown
    else:
        claims, text, update["answered_docs"] = extractive(state, deps, note)
    plan = state["plan"]
    if deps.llm is not None and any(sub.intent == "seal" for sub in plan.sub_questions):
        # Where a seal is comes from the seal detector, not from the model's reading of OCR text.
        seal_subs = {sub.question for sub in plan.sub_questions if sub.intent == "seal"}
        claims = [c for c in claims if c.sub_question not in seal_subs or c.kind != "value"]
        for i, sub in enumerate(plan.sub_questions):
            if sub.intent == "seal" and not any(c.sub_question == sub.question and c.kind != "value" for c in claims):
                claims += seal_claims(state, deps, note, i, sub, None)
    claims = cite_links(claims, state.get("images", {}), state.get("inspected", set()), deps.config.linked_per_page, note)
    return {"claims": claims, "answer_text": text, "fallback": fallback, **update}
