"""`contracts`: generated contract pages (zh + en, half of them scanned-looking) and their QA pairs.

Pages come from :func:`evals.datasets.contracts.make_contracts`. Its QA pairs ("甲方是谁", "where is
the seal", ...) are written for one page; over a corpus they are ambiguous, so every question here
names its contract by something printed on it — the contract number or a party's name, whichever is
unique in the corpus — e.g. "合同编号HT-20220424-976的甲方是谁" or "Who is Party B in the agreement
with Redwood Software Inc.?". Answers and aliases are the generator's ground truth; "where is the
seal" questions carry every seal box of the page (pixels of the saved file). Two retrieval-only
queries per page (the contract type with a party, the amount in words) test recall without a
question word.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel

from imgrag.evals.datasets.contracts import ContractSpec, QAPair, make_contracts, read_contracts

from . import GoldenItem

NAME = "contracts"


class ContractsRecipe(BaseModel):
    pages: int = 40
    seed: int = 20240601
    scan_ratio: float = 0.5


def _unique(value: str, spec: ContractSpec, texts: dict[str, str]) -> bool:
    """True when ``value`` is printed on this page and no other page of the corpus."""
    return all((value in t) == (f == spec.file) for f, t in texts.items())


def _pick(options: list[str], key: str) -> str:
    """A deterministic choice among phrasings, so the set mixes them without an RNG to carry."""
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return options[h % len(options)]


def _ident(spec: ContractSpec, texts: dict[str, str], prefer: str) -> str | None:
    """The first unique identifier among (prefer, contract number)."""
    for v in (prefer, spec.contract_no):
        if v and _unique(v, spec, texts):
            return v
    return None


def items_for(spec: ContractSpec, texts: dict[str, str]) -> list[GoldenItem]:
    """The golden queries of one page."""
    stem = Path(spec.file).stem
    rel = [spec.file]
    qa: dict[tuple[str, str], QAPair] = {(q.field, q.lang): q for q in spec.qa}
    no = spec.contract_no if _unique(spec.contract_no, spec, texts) else None
    a_id = _ident(spec, texts, spec.party_a)
    b_id = _ident(spec, texts, spec.party_b)
    out: list[GoldenItem] = []

    def add(kind: str, query: str, lang: str, pair: QAPair | None) -> None:
        extra: dict[str, object] = {}
        if pair is not None:
            if pair.answer_bboxes:
                extra = {"answer_bbox": pair.answer_bbox, "answer_bboxes": pair.answer_bboxes}
            else:
                extra = {"answer": pair.answer, "answer_aliases": pair.answer_aliases}
        out.append(GoldenItem(id=f"{NAME}/{stem}/{kind}", query=query, relevant=rel, lang=lang, kind=kind, **extra))  # type: ignore[arg-type]

    if spec.lang == "zh":
        if no:
            add("party_a", _pick([f"合同编号{no}的甲方是谁", f"{no}号合同的甲方是哪家公司"], stem + "a"), "zh", qa[("party_a", "zh")])
        if a_id and a_id != spec.party_b:
            q = f"{a_id}签订的合同中乙方是谁" if a_id == spec.party_a else f"合同编号{a_id}的乙方是谁"
            add("party_b", q, "zh", qa[("party_b", "zh")])
        if b_id:
            q = f"{b_id}的合同签订日期是哪天" if b_id == spec.party_b else f"合同{b_id}的签订日期"
            add("sign_date", q, "zh", qa[("sign_date", "zh")])
        if a_id:
            add("amount", f"{a_id}的{spec.contract_type}金额是多少", "zh", qa[("amount", "zh")])
        if no:
            add("seal", f"合同{no}的印章在哪里", "zh", qa[("seals", "zh")])
            add("seal_en", f"where is the seal on contract {no}", "en", qa[("seals", "en")])
        if a_id:
            add("find_type", f"{a_id}的{spec.contract_type}", "zh", None)
        add("find_amount_words", f"合同金额{spec.amount_words}", "zh", None)
    else:
        if no:
            add("party_a", _pick([f"Who is Party A of agreement {no}?", f"Which company is Party A in agreement {no}?"], stem + "a"), "en", qa[("party_a", "en")])
        if a_id and a_id != spec.party_b:
            q = f"Who is Party B in the agreement with {a_id}?" if a_id == spec.party_a else f"Who is Party B of agreement {a_id}?"
            add("party_b", q, "en", qa[("party_b", "en")])
        if no:
            add("sign_date", f"When was agreement {no} signed?", "en", qa[("sign_date", "en")])
        if a_id and b_id and a_id != b_id:
            add("amount", f"What is the contract price of the agreement between {a_id} and {b_id}?", "en", qa[("amount", "en")])
        if no:
            add("seal", f"Where is the seal on agreement {no}?", "en", qa[("seals", "en")])
        if b_id:
            q = f"与{b_id}签订的合同是哪天签的" if b_id == spec.party_b else f"合同{b_id}的签订日期"
            add("sign_date_zh", q, "zh", qa[("sign_date", "zh")])
        if a_id:
            add("find_type", f"{spec.contract_type.title()} {a_id}", "en", None)
        add("find_amount_words", f"agreement for {spec.amount_words}", "en", None)
    return out


def build_corpus(out_dir: str | Path, recipe: ContractsRecipe) -> None:
    """Render the pages into ``out_dir/corpus``; ground truth in ``out_dir/meta/contracts.jsonl``."""
    out = Path(out_dir)
    make_contracts(out / "corpus", recipe.pages, seed=recipe.seed, variants=True, scan_ratio=recipe.scan_ratio,
                   sidecar=out / "meta" / "contracts.jsonl")


def golden(out_dir: str | Path, recipe: ContractsRecipe | None = None) -> list[GoldenItem]:
    """The golden items of a built corpus (from its ground-truth sidecar)."""
    specs = read_contracts(Path(out_dir) / "meta" / "contracts.jsonl")
    texts = {s.file: "\n".join(ln.text for ln in s.lines) for s in specs}
    items: list[GoldenItem] = []
    for s in specs:
        items.extend(items_for(s, texts))
    return items
