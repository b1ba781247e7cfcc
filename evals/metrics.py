"""Metric functions, each small enough to check by hand (tests/test_evals.py does).

Ranking metrics come from ``ranx`` (Recall@K, MRR@K, nDCG@K with graded relevance) so the numbers
match what other tools report; answer, citation, grounding, localisation and caption metrics are
ours because no well-kept offline package scores them the way imgrag's output is shaped. BLEU is
``sacrebleu``'s; CIDEr-D is written out here (``pycocoevalcap`` is not installable offline and needs
Java for its tokenizer), following Vedantam et al. 2015 and the coco-caption reference code.
"""

from __future__ import annotations

import math
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from imgrag.indexing.text import find_dates, squash

RANKING_METRICS: tuple[str, ...] = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")


# --------------------------------------------------------------------------- ranking


def ranking_metrics(
    qrels: Mapping[str, Mapping[str, int]],
    ranked: Mapping[str, Sequence[str]],
    metrics: Sequence[str] = RANKING_METRICS,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Mean and per-query scores of ``metrics`` (ranx names) for ranked lists against graded qrels.

    ``ranked`` maps query id → documents best first (duplicates after the first are ignored); a
    query missing from ``ranked`` or with an empty list scores 0, never disappears from the mean.
    Per-query lists follow the order of ``qrels``."""
    from ranx import Qrels, Run, evaluate

    qids = [q for q in qrels if any(g > 0 for g in qrels[q].values())]
    if not qids:
        return {m: 0.0 for m in metrics}, {m: [] for m in metrics}
    run: dict[str, dict[str, float]] = {}
    for q in qids:
        docs = list(dict.fromkeys(ranked.get(q, [])))
        # ranx needs every query present; a placeholder that is never relevant keeps an empty list at 0
        run[q] = {d: float(len(docs) - i) for i, d in enumerate(docs)} or {"\x00none": 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's uint64→int64 cast notices
        per = evaluate(
            Qrels({q: {d: int(g) for d, g in qrels[q].items() if g > 0} for q in qids}),
            Run(run),
            list(metrics),
            return_mean=False,
            make_comparable=True,
        )
    if isinstance(per, np.ndarray):  # a single metric comes back as a bare array
        per = {metrics[0]: per}
    per_query = {m: [float(x) for x in per[m]] for m in metrics}
    return {m: float(np.mean(per_query[m])) for m in metrics}, per_query


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation; 0.0 for no values."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else 0.0


def latency_summary(ms: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2), "n": len(ms)}


# --------------------------------------------------------------------------- answers


def normalize_dates(text: str) -> str:
    """Rewrite every full date in ``text`` as ISO ``YYYY-MM-DD`` (2023年5月12日, 二〇二三年五月十二日,
    May 12, 2023, 12 May 2023, 2023/05/12, 05/12/2023 → 2023-05-12), read as the index reads them
    (:func:`indexing.text.find_dates`), so answers in any printed form compare equal."""
    out, last = [], 0
    for s in find_dates(text):
        if s.precision == "day":
            out += [text[last : s.start], f" {s.date.isoformat()} "]
            last = s.end
    return "".join(out) + text[last:]


_CJK = "\u3400-\u9fff\uf900-\ufaff"
_NUMBER = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,]*\d)|(?<![\d.,])\d{2,}\.0+(?![.\d])")


def _canon_number(m: re.Match[str]) -> str:
    """``120,000.00`` → ``120000``; ``1,200.50`` → ``1200.50``. Only thousands separators and
    all-zero decimals go, so section and table numbers (``1.10``) keep their meaning."""
    s = m.group(0).replace(",", "")
    return re.sub(r"\.0+$", "", s)


def normalize_answer(text: str) -> str:
    """Comparable form of an answer: NFKC (full-width → ASCII), dates → ISO, lower case, numbers
    canonical (``120,000.00`` → ``120000``), punctuation → space, no spaces next to Chinese
    characters (OCR splits Chinese lines at random), single spaces elsewhere."""
    t = unicodedata.normalize("NFKC", text or "")
    t = normalize_dates(t).lower()
    t = _NUMBER.sub(_canon_number, t)
    t = re.sub(r"[^\w.]+|_", " ", t)
    t = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", t)
    t = re.sub(rf"\s*([{_CJK}])\s*", r"\1", t)
    return re.sub(r"\s+", " ", t).strip()


def answer_correct(prediction: str, answer: str | None, aliases: Iterable[str] = ()) -> bool:
    """True when the normalised gold answer or any alias occurs in the normalised prediction as a
    whole unit (a Latin word or number is not matched inside a longer one: ``120000`` is not in
    ``1200000``, ``Summit`` is not in ``Summitry``).

    Containment, not equality, because answers quote a line (``甲方：北京华信科技有限公司``) and the
    gold is the value."""
    pred = normalize_answer(prediction)
    if not pred:
        return False
    for gold in (normalize_answer(a) for a in [answer or "", *aliases]):
        if gold and re.search(rf"(?<![a-z0-9.]){re.escape(gold)}(?!\.?[a-z0-9])", pred):
            return True
    return False


def citation_scores(cited: Sequence[str], relevant: Iterable[str]) -> tuple[float | None, float | None]:
    """(precision, recall) of the cited images against the relevant ones, each image counted once.
    Precision is None when nothing was cited, recall None when nothing is relevant."""
    c = list(dict.fromkeys(cited))
    rel = set(relevant)
    precision = sum(1 for x in c if x in rel) / len(c) if c else None
    recall = sum(1 for x in rel if x in c) / len(rel) if rel else None
    return precision, recall


def snippet_grounded(snippet: str, ocr_text: str) -> bool:
    """Whether the quoted snippet really appears in the image's OCR text (whitespace- and
    width-insensitive). An empty snippet is not grounded."""
    s = squash(snippet or "")
    return bool(s) and s in squash(ocr_text or "")


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``[x0, y0, x1, y1]`` boxes; 0 for empty or disjoint boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 and inter > 0 else 0.0


def best_iou(pred: Sequence[float] | None, gold: Sequence[Sequence[float]]) -> float:
    """IoU of a predicted box with the gold box it overlaps most (a page may carry two seals and
    either is a right answer to "where is the seal"); 0 without a prediction."""
    if pred is None or len(pred) != 4:
        return 0.0
    return max((iou(pred, g) for g in gold), default=0.0)


# --------------------------------------------------------------------------- captions


def caption_tokens(text: str) -> list[str]:
    """Lower-cased word tokens; CJK characters are single tokens (as coco-caption's PTB tokenizer
    would split them after segmentation)."""
    t = unicodedata.normalize("NFKC", text).lower()
    return re.findall(r"[\u3400-\u9fff]|[a-z0-9]+(?:'[a-z]+)?", t)


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 (sacrebleu, 13a tokenizer, exponential smoothing) in 0–100; each hypothesis has
    one or more references."""
    import sacrebleu

    if not hypotheses:
        return 0.0
    n_refs = max(len(r) for r in references)
    streams = [[r[i] if i < len(r) else r[0] for r in references] for i in range(n_refs)]
    return float(sacrebleu.corpus_bleu(list(hypotheses), streams).score)


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def cider_d(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0
) -> tuple[float, list[float]]:
    """CIDEr-D (×10, as coco-caption reports it): per n-gram order, cosine of TF-IDF vectors with
    hypothesis counts clipped by the reference's, a Gaussian length penalty (σ = 6), averaged over
    references and orders 1..n. Document frequencies come from the references of this corpus.
    Returns (corpus mean, per-item scores)."""
    hyp_tok = [caption_tokens(h) for h in hypotheses]
    ref_tok = [[caption_tokens(r) for r in refs] for refs in references]
    n_items = len(hyp_tok)
    if n_items == 0:
        return 0.0, []
    df: Counter[tuple[str, ...]] = Counter()
    for refs in ref_tok:
        seen: set[tuple[str, ...]] = set()
        for r in refs:
            for k in range(1, n + 1):
                seen.update(_ngrams(r, k))
        df.update(seen)
    log_n = math.log(float(n_items))

    def vec(tokens: Sequence[str]) -> tuple[list[dict[tuple[str, ...], float]], list[float]]:
        vs, norms = [], []
        for k in range(1, n + 1):
            v = {g: c * (log_n - math.log(max(1.0, df[g]))) for g, c in _ngrams(tokens, k).items()}
            vs.append(v)
            norms.append(math.sqrt(sum(x * x for x in v.values())))
        return vs, norms

    scores: list[float] = []
    for h, refs in zip(hyp_tok, ref_tok, strict=True):
        hv, hn = vec(h)
        total = np.zeros(n)
        for r in refs:
            rv, rn = vec(r)
            delta = float(len(h) - len(r))
            for k in range(n):
                dot = sum(min(val, rv[k][g]) * rv[k][g] for g, val in hv[k].items() if g in rv[k])
                if hn[k] and rn[k]:
                    total[k] += dot / (hn[k] * rn[k]) * math.exp(-(delta**2) / (2 * sigma**2))
        score = float(total.mean() / max(1, len(refs)) * 10.0)
        scores.append(score)
    return float(np.mean(scores)), scores
