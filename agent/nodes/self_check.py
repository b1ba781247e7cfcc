"""*self_check*: refuse what cannot be verified — a cited image not inspected in this run, a snippet
not in the index's stored OCR text of that image at the cited box (a re-read of this run does not
count: a quote is what the index holds), a box outside the image or not a detected seal, a claim whose words
its snippets do not carry or that an LLM judges unsupported — and send the failing parts back to
retrieve once more with feedback, dropping them if they still fail."""

from __future__ import annotations

from typing import Any

from imgrag.indexing.text import query_terms, tokens

from ..evidence import ImageInfo, snippet_matches, squash
from ..llm import LLMOutputError
from ..schemas import CheckFailure, Checks, Citation, Claim, LLMVerdict
from ..state import AgentState, Deps, Note, log
from .answer import cite_links, extractive

SUPPORT_MIN = 0.5


def support(claim: Claim) -> float:
    """Share of the claim's content terms that occur in its snippets (1.0 for a claim of no terms)."""
    terms = [t for t in query_terms(claim.text) if len(t) > 1 or not t.isascii()]
    if not terms:
        return 1.0
    quoted = set(tokens(" ".join(c.snippet for c in claim.citations)))
    return sum(t in quoted for t in terms) / len(terms)


def linked_failure(cit: Citation, claim: Claim, images: dict[str, ImageInfo]) -> str | None:
    """Why a ``linked`` citation fails, or None: it must name a page the claim also quotes, the two
    must be linked (as get_metadata said in this run), and its snippet must be that page's own text,
    caption or file name."""
    info = images[cit.image_id]
    quoted = images.get(cit.linked_to or "")
    if quoted is None or not any(c.image_id == cit.linked_to and c.kind != "linked" for c in claim.citations):
        return f"linked citation {cit.image_id!r} is not linked to a page the claim quotes"
    if not any(ln.image_id == cit.image_id for ln in quoted.links) and not any(ln.image_id == quoted.image_id for ln in info.links):
        return f"{cit.image_id!r} is not linked to {quoted.image_id!r}"
    s = squash(cit.snippet)
    if not s or s not in info.corpus() + squash(info.caption) + squash(info.file):
        return f"snippet {cit.snippet[:60]!r} is not in the text, caption or name of {cit.image_id}"
    return None


async def check_claim(
    claim: Claim, extractive: bool, state: AgentState, deps: Deps, checks: Checks, note: Note = log.debug
) -> list[CheckFailure]:
    """Every check one claim must pass against what this run saw; returns the failures (empty =
    passed) and counts citations (and LLM verdicts) in ``checks``."""
    images = state.get("images", {})
    inspected = state.get("inspected", set())
    reasons: list[CheckFailure] = []
    if not claim.citations:
        reasons.append(CheckFailure(claim=claim.text, check="no_citation", reason="the claim cites nothing"))
    for cit in claim.citations:
        checks.citations_checked += 1
        info = images.get(cit.image_id)
        failure: CheckFailure | None = None
        if cit.image_id not in inspected or info is None:
            failure = CheckFailure(claim=claim.text, image_id=cit.image_id, snippet=cit.snippet, check="inspected",
                                   reason=f"image {cit.image_id!r} was not inspected in this run")
        elif cit.kind == "seal" and (
            cit.bbox is None or not any(all(abs(a - b) <= 2 for a, b in zip(cit.bbox, box)) for box in info.seals)
        ):
            failure = CheckFailure(claim=claim.text, image_id=cit.image_id, snippet=cit.snippet, check="seal",
                                   reason=f"bbox {list(cit.bbox or [])} is not a seal the detector found on {cit.image_id}")
        elif cit.kind == "linked" and (reason := linked_failure(cit, claim, images)):
            failure = CheckFailure(claim=claim.text, image_id=cit.image_id, snippet=cit.snippet, check="linked", reason=reason)
        elif cit.kind != "linked" and (cit.kind != "seal" or cit.snippet) and not snippet_matches(
            cit.snippet, info, cit.bbox if cit.kind != "seal" else None
        ):
            # A seal's box is the seal's, its quote the nearest line: that quote is checked on the page.
            where = f" at {[round(v) for v in cit.bbox]}" if cit.bbox is not None and cit.kind != "seal" else ""
            failure = CheckFailure(claim=claim.text, image_id=cit.image_id, snippet=cit.snippet, check="snippet",
                                   reason=f"snippet {cit.snippet[:60]!r} is not in the stored OCR text of {cit.image_id}{where}")
        elif cit.bbox is not None and info.width and not (
            -2 <= cit.bbox[0] < cit.bbox[2] <= info.width + 2 and -2 <= cit.bbox[1] < cit.bbox[3] <= info.height + 2
        ):
            failure = CheckFailure(claim=claim.text, image_id=cit.image_id, snippet=cit.snippet, check="bbox",
                                   reason=f"bbox {list(cit.bbox)} is outside the {info.width}x{info.height} image")
        if failure is None:
            checks.citations_passed += 1
        else:
            reasons.append(failure)
    if reasons:
        return reasons
    if claim.kind == "seal" and not any(c.kind == "seal" for c in claim.citations):
        reasons.append(CheckFailure(claim=claim.text, check="seal", reason="a seal claim cites no detected seal"))
    if claim.kind == "no_seal" and any(images[c.image_id].seals for c in claim.citations):
        reasons.append(CheckFailure(claim=claim.text, check="seal", reason="the cited page has a detected seal"))
    if claim.kind != "value":
        return reasons
    if extractive:
        # The stated value must itself be quoted.
        value = claim.value or claim.text
        if not any(squash(value) in squash(c.snippet) for c in claim.citations):
            reasons.append(CheckFailure(claim=claim.text, check="value", reason=f"{value!r} is not in the quoted snippets"))
        return reasons
    # The value the LLM gave as its answer must be quoted, as an extractive one must.
    if claim.value and not any(squash(claim.value) in squash(c.snippet) for c in claim.citations):
        reasons.append(CheckFailure(claim=claim.text, check="value", reason=f"{claim.value!r} is not in the quoted snippets"))
        return reasons
    # A real snippet cited for an unrelated statement: most of the claim's words must be quoted.
    share = support(claim)
    if share < SUPPORT_MIN:
        reasons.append(
            CheckFailure(claim=claim.text, check="support",
                         reason=f"only {share:.0%} of the claim's words are in its snippets (need {SUPPORT_MIN:.0%})")
        )
    elif deps.verify:
        verdict = await verify(claim, deps, note)
        if verdict is False:
            reasons.append(CheckFailure(claim=claim.text, check="llm_verify", reason="the LLM judged the claim unsupported by its snippets"))
        elif verdict:
            checks.llm_verified += 1
    return reasons


async def check_all(
    claims: list[Claim], extractive: bool, state: AgentState, deps: Deps, checks: Checks, note: Note = log.debug
) -> tuple[list[Claim], list[Claim]]:
    """The claims that passed and those that failed, each marked with its status and reasons."""
    passed: list[Claim] = []
    failed: list[Claim] = []
    for claim in claims:
        reasons = await check_claim(claim, extractive, state, deps, checks, note)
        claim.status = "failed" if reasons else "passed"
        claim.reasons = [r.reason for r in reasons]
        checks.failures.extend(reasons)
        (failed if reasons else passed).append(claim)
    return passed, failed


async def verify(claim: Claim, deps: Deps, note: Note = log.debug) -> bool | None:
    """The LLM's verdict on one claim given only its snippets; None when it cannot give one."""
    assert deps.llm is not None
    evidence = "\n".join(f'- "{c.snippet}" (image {c.image_id})' for c in claim.citations)
    messages = [
        {"role": "system", "content": "You check whether a claim is supported by quoted document text. Be strict: the quotes must state it."},
        {"role": "user", "content": f"Claim: {claim.text}\nQuotes:\n{evidence}\nIs the claim supported by the quotes?"},
    ]
    try:
        v = await deps.llm.structured(messages, LLMVerdict, purpose="verify", max_tokens=80)
    except LLMOutputError as e:
        note(f"verification of {claim.text[:40]!r} unavailable: {e.message}")
        return None
    note(f"LLM verification of {claim.text[:40]!r}: {'supported' if v.supported else 'NOT supported'} {v.reason[:60]!r}")
    return v.supported


async def self_check(state: AgentState, deps: Deps, note: Note = log.debug) -> dict[str, Any]:
    plan = state["plan"]
    rnd = state.get("round", 0)
    checks = state.get("checks", Checks()).model_copy(deep=True)
    is_extractive = deps.llm is None or bool(state.get("fallback"))
    names = ["inspected", "snippet", "bbox", "value", *([] if is_extractive else ["support"])]
    if any(sub.intent == "seal" for sub in plan.sub_questions):
        names.append("seal")
    if any(c.kind == "linked" for claim in state.get("claims", []) for c in claim.citations):
        names.append("linked")
    if not is_extractive and deps.verify:
        names.append("llm_verify")
    checks.checks_run = list(dict.fromkeys([*checks.checks_run, *names]))
    checked = [c.model_copy() for c in state.get("claims", [])]  # statuses are set on copies
    claims, failed = await check_all(checked, is_extractive, state, deps, checks, note)
    for f in failed:
        note(f"failed: {f.text[:60]!r}: {'; '.join(f.reasons)}")

    answered = {c.sub_question for c in claims}
    missing = [i for i, sub in enumerate(plan.sub_questions) if sub.question not in answered]
    failed_subs = sorted({i for i, sub in enumerate(plan.sub_questions) if any(c.sub_question == sub.question for c in failed)} | set(missing))
    note(f"round {rnd}: {len(claims)} claim(s) passed, {len(failed)} failed; parts without a passing claim: {[i + 1 for i in missing] or 'none'}")
    if (failed or missing) and rnd < deps.config.max_retries:
        feedback = [f"{f.text[:80]}: {'; '.join(f.reasons)}" for f in failed]
        feedback += [f"no verified answer yet for: {plan.sub_questions[i].question}" for i in missing]
        note(f"retrying retrieve/inspect for part(s) {[i + 1 for i in failed_subs]}")
        checks.retries += 1
        return {"verdict": "retry", "round": rnd + 1, "failed_subs": failed_subs, "feedback": feedback, "checks": checks, "claims": checked}
    fallback = bool(state.get("fallback"))
    update: dict[str, Any] = {}
    if missing and not is_extractive:
        # Last round and the LLM's claims for some parts did not survive: quote the evidence instead.
        extra, text, update["answered_docs"] = extractive(state, deps, note)
        extra = cite_links(extra, state.get("images", {}), state.get("inspected", set()), deps.config.linked_per_page, note)
        extra = [c for c in extra if c.sub_question in {plan.sub_questions[i].question for i in missing}]
        if extra:
            kept_extra, failed_extra = await check_all(extra, True, state, deps, checks, note)
            if kept_extra:
                note(f"part(s) {[i + 1 for i in missing]} answered extractively: no LLM claim for them passed")
                checks.notes.append(f"{len(kept_extra)} claim(s) quoted extractively: no LLM claim for their part passed the self-check")
                checks.checks_run = list(dict.fromkeys([*checks.checks_run, "value"]))
                if not claims:  # nothing of the LLM's survived: the answer is extractive, say so
                    fallback = True
                    update["answer_text"] = text
                claims += kept_extra
            failed += failed_extra
    for f in failed:
        f.status = "dropped"
    checks.claims_total = len(claims) + len(failed)
    checks.claims_passed = len(claims)
    checks.claims_dropped = len(failed)
    checks.passed = bool(claims) and all(c.status == "passed" for c in claims)
    return {"verdict": "finalize", "claims": claims + failed, "fallback": fallback, "checks": checks, **update}
