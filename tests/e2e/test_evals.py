"""evals: metric functions on hand-computed cases, the golden format and split, and the runner end
to end on a tiny golden set over a tiny real index (generated contract pages, real models)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgrag.evals.answers import PredictedAnswer, PredictedCitation, _pick_subset, score_item, summarise
from imgrag.evals.golden import GoldenFormatError, GoldenItem, read_golden, write_golden
from imgrag.evals.metrics import (
    answer_correct,
    best_iou,
    bleu,
    cider_d,
    citation_scores,
    iou,
    latency_summary,
    normalize_answer,
    normalize_dates,
    percentile,
    ranking_metrics,
    snippet_grounded,
)
from imgrag.evals.retrieval import hit_name, matcher, parse_sweep
from imgrag.evals.splits import HELDOUT_PERCENT, is_heldout, split_of

ROOT = Path(__file__).resolve().parents[2]
L3 = math.log2(3)


# --------------------------------------------------------------------------- ranking metrics


def test_ranking_metrics_hand_computed() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}}
    ranked = {"q1": ["x", "a"], "q2": ["c", "z", "b"]}
    mean, per = ranking_metrics(qrels, ranked)
    assert per["recall@1"] == [0.0, 0.5]
    assert mean["recall@1"] == pytest.approx(0.25)
    assert mean["recall@5"] == pytest.approx(1.0)
    assert per["mrr@10"] == pytest.approx([0.5, 1.0])
    # q1: 1/log2(3); q2: (1 + 1/log2(4)) / (1 + 1/log2(3))
    assert per["ndcg@10"][0] == pytest.approx(1 / L3)
    assert per["ndcg@10"][1] == pytest.approx(1.5 / (1 + 1 / L3))


def test_ranking_metrics_graded_missing_and_duplicates() -> None:
    # graded: b (1) before a (2): DCG = 1 + 2/log2(3), IDCG = 2 + 1/log2(3)
    mean, _ = ranking_metrics({"q": {"a": 2, "b": 1}}, {"q": ["b", "a"]}, ["ndcg@10"])
    assert mean["ndcg@10"] == pytest.approx((1 + 2 / L3) / (2 + 1 / L3))
    # a query the system never answered counts as 0, it does not vanish from the mean
    mean, per = ranking_metrics({"q1": {"a": 1}, "q2": {"b": 1}}, {"q1": ["a"]})
    assert per["recall@10"] == [1.0, 0.0] and mean["mrr@10"] == pytest.approx(0.5)
    # a repeated document (two pages of one file) does not push the relevant one down
    mean, _ = ranking_metrics({"q": {"a": 1}}, {"q": ["x", "x", "a"]}, ["mrr@10"])
    assert mean["mrr@10"] == pytest.approx(0.5)


def test_ranking_metrics_per_query_follow_the_order_of_qrels() -> None:
    """ranx scores queries in sorted id order; the per-query lists (by-kind / by-lang breakdowns)
    must follow the caller's order, or each query gets another query's score."""
    qrels = {"z-hit": {"a": 1}, "a-miss": {"b": 1}, "m-hit": {"c": 1}}
    ranked = {"z-hit": ["a"], "a-miss": ["x"], "m-hit": ["c"]}
    _, per = ranking_metrics(qrels, ranked)
    assert per["recall@1"] == [1.0, 0.0, 1.0]


def test_latency_percentiles() -> None:
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert percentile([1, 2, 3, 4], 95) == pytest.approx(3.85)
    assert latency_summary([]) == {"p50_ms": 0.0, "p95_ms": 0.0, "n": 0}


# --------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    "text",
    ["2023年5月12日", "2023年05月12日", "May 12, 2023", "12 May 2023", "2023/05/12", "2023.05.12", "05/12/2023", "2023-05-12"],
)
def test_dates_normalise_to_iso(text: str) -> None:
    assert normalize_dates(text).strip() == "2023-05-12"


def test_answer_correct() -> None:
    assert answer_correct("甲方（买方）：杭州万象医疗器械有限公司", "杭州万象医疗器械有限公司")
    assert answer_correct("签订日期：2022年4月24日", "2022-04-24")
    assert answer_correct("signed on April 24, 2022.", "2022-04-24")
    assert not answer_correct("2022年4月25日", "2022-04-24")
    assert answer_correct("ＵＳＤ　６,３００,０００.００", "USD 6,300,000.00")  # full width
    assert answer_correct("人民币759,500.00元", "x", ["759500"])
    assert not answer_correct("USD 1,200,000.00", "120000")  # a number inside a longer one
    assert not answer_correct("Summitry Holdings", "Summit")
    assert not answer_correct("Table 1.1", "Table 1.10")
    assert not answer_correct("", "anything") and not answer_correct("text", None)
    assert normalize_answer("Northwind Trading Co., Ltd.") == "northwind trading co ltd"


def test_citations_grounding_and_iou() -> None:
    assert citation_scores(["a.png", "b.png", "a.png"], ["a.png"]) == (0.5, 1.0)
    assert citation_scores([], ["a.png"]) == (None, 0.0)
    assert snippet_grounded("甲方：杭州 万象", "合同\n甲方：杭州万象医疗器械有限公司")
    assert not snippet_grounded("乙方：杭州万象", "甲方：杭州万象医疗器械有限公司")
    assert not snippet_grounded("", "x")
    assert iou([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175)
    assert iou([0, 0, 10, 10], [10, 10, 20, 20]) == 0.0
    assert best_iou([0, 0, 10, 10], [[100, 100, 110, 110], [0, 0, 10, 20]]) == pytest.approx(0.5)
    assert best_iou(None, [[0, 0, 1, 1]]) == 0.0


def test_score_item_and_summary() -> None:
    item = GoldenItem(id="q", query="where is the seal", relevant=["p.png"], answer_bboxes=[[0, 0, 100, 100]], kind="seal")
    pred = PredictedAnswer(answer="seal", citations=[PredictedCitation(image_id="i1", image="p.png", snippet="合同专用章")],
                           bbox=[0, 0, 100, 60], bbox_image="p.png")
    s = score_item(item, pred, {"i1": "北京某某公司 合同专用章"}, {"p.png": [[200, 200, 300, 300], [10, 0, 100, 100]]}, 12.0)
    assert s.iou == pytest.approx(0.6) and s.detector_iou == pytest.approx(0.9)
    assert (s.citation_precision, s.citation_recall, s.grounded) == (1.0, 1.0, 1)
    # the same box on another page is no answer
    other = pred.model_copy(update={"bbox_image": "q.png"})
    assert score_item(item, other, {}, {}, 1.0).iou == 0.0
    qa = GoldenItem(id="a", query="甲方是谁", relevant=["p.png"], answer="杭州万象医疗器械有限公司", kind="party_a")
    wrong = score_item(qa, PredictedAnswer(answer="西安启航贸易有限公司"), {}, {}, 5.0)
    right = score_item(qa, PredictedAnswer(answer="甲方：杭州万象医疗器械有限公司"), {}, {}, 5.0)
    m = summarise([s, wrong, right])
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["seal_iou@0.5"] == 1.0 and m["detector_iou@0.5"] == 1.0
    assert m["grounding_rate"] == 1.0


def test_subset_keeps_every_kind() -> None:
    items = [GoldenItem(id=f"{k}{i}", query="q", relevant=["x"], answer="a", kind=k) for k in "abc" for i in range(5)]
    sub = _pick_subset(items, 6)
    assert [it.id for it in sub] == ["a0", "a1", "b0", "b1", "c0", "c1"]
    assert len(_pick_subset(items, None)) == 15


# --------------------------------------------------------------------------- captions


def test_bleu_and_cider_d() -> None:
    assert bleu(["a red apple on a table"], [["a red apple on a table"]]) == pytest.approx(100.0)
    # identical captions score 10 per n-gram order that exists: 4 tokens → all 4 orders → 10
    score, per = cider_d(["a red round apple", "a blue car"], [["a red round apple"], ["a blue car"]])
    assert per[0] == pytest.approx(10.0)
    assert per[1] == pytest.approx(10.0 * 3 / 4)  # 3 tokens: no 4-grams
    assert score == pytest.approx((per[0] + per[1]) / 2)
    # nothing shared → 0; the length penalty lowers a right but longer caption
    _, per = cider_d(["green tree", "a red round apple on the big old table"], [["a blue car"], ["a red round apple"]])
    assert per[0] == 0.0 and 0.0 < per[1] < 10.0


# --------------------------------------------------------------------------- format and split


def test_golden_roundtrip_and_errors(tmp_path: Path) -> None:
    items = [
        GoldenItem(id="1", query="甲方是谁", relevant=["a.png"], answer="X", answer_aliases=["x"]),
        GoldenItem(id="2", query="where", relevant=["a.png"], answer_bbox=[1, 2, 3, 4]),
        GoldenItem(id="3", query="graded", relevant=["a.png"], relevance={"b.png": 2}),
    ]
    p = write_golden(tmp_path / "g.jsonl", items)
    back = read_golden(p)
    assert [b.model_dump() for b in back] == [i.model_dump() for i in items]
    assert back[1].answer_bboxes == [[1, 2, 3, 4]] and back[2].qrels() == {"a.png": 1, "b.png": 2}
    first = json.loads(p.read_text().splitlines()[0])
    assert set(first) == {"id", "query", "relevant", "answer", "answer_aliases"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "query": "q", "relevant": ["a"]}\n{"query": "no id"}\n')
    with pytest.raises(GoldenFormatError, match="bad.jsonl:2"):
        read_golden(bad)
    with pytest.raises(ValueError):
        GoldenItem(id="x", query="q", answer_bbox=[5, 5, 1, 1])


def test_heldout_split_is_fixed_and_by_file_name() -> None:
    names = [f"picture_{i:05d}.png" for i in range(5000)]
    share = sum(is_heldout(n) for n in names) / len(names)
    assert abs(share - HELDOUT_PERCENT / 100) < 0.02
    assert is_heldout("animals/birds/eagle_01.png") == is_heldout("eagle_01.png") == is_heldout(Path("/x/eagle_01.png"))
    # pinned: changing the rule would silently leak eval images into training
    assert [split_of(n) for n in ("eagle_01.png", "flag_of_poland_marcin_wi_01.png", "cat.png", "a.png")] == [
        "train", "heldout", "heldout", "train"
    ]


def test_hit_names_and_matching(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    (corpus / "sub").mkdir(parents=True)
    assert hit_name(str(corpus / "sub" / "x.png"), 1, 1, corpus) == "sub/x.png"
    assert hit_name("/elsewhere/doc.pdf", 2, 3, corpus) == "doc.pdf#page=2"
    m = matcher(["doc.pdf", "x.png"])
    assert m("doc.pdf#page=2") == "doc.pdf" and m("sub/x.png") == "x.png" and m("y.png") == "y.png"
    assert matcher(["doc.pdf#page=2"])("doc.pdf#page=2") == "doc.pdf#page=2"
    assert parse_sweep("image=0,0.5;bm25=2") == {"image": [0.0, 0.5], "bm25": [2.0]}


def test_contract_questions_name_their_contract() -> None:
    from imgrag.evals.datasets.contracts import render_contract
    from imgrag.evals.golden.contracts import items_for

    specs = [render_contract(i, 3, lang, None)[1] for i, lang in enumerate(("zh", "en"))]
    texts = {s.file: "\n".join(ln.text for ln in s.lines) for s in specs}
    items = [it for s in specs for it in items_for(s, texts)]
    for it in items:
        spec = next(s for s in specs if s.file == it.relevant[0])
        # every question names something printed only on its own page
        assert spec.contract_no in it.query or spec.party_a in it.query or spec.party_b in it.query or it.kind == "find_amount_words"
    seal = next(it for it in items if it.kind == "seal")
    assert seal.answer_bboxes == [s.bbox for s in specs[0].seals]


# --------------------------------------------------------------------------- end to end


def _imgrag(home: Path, *args: str, backend: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMGRAG_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    for k in ("IMGRAG_PRINCIPAL", "IMGRAG_GROUPS", "IMGRAG_BACKEND"):
        env.pop(k, None)
    if backend:
        env["IMGRAG_BACKEND"] = backend
    p = subprocess.run([sys.executable, "-m", "imgrag", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if ok:
        assert p.returncode == 0, f"imgrag {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_eval_end_to_end_on_a_tiny_index(tmp_path: Path) -> None:
    from imgrag.evals.datasets.contracts import make_contracts
    from imgrag.evals.golden.contracts import items_for

    corpus = tmp_path / "corpus"
    specs = make_contracts(corpus, 2, seed=11, variants=False, sidecar=tmp_path / "contracts.jsonl")
    texts = {s.file: "\n".join(ln.text for ln in s.lines) for s in specs}
    items = [it for s in specs for it in items_for(s, texts) if it.kind in ("party_a", "sign_date", "seal", "find_type")]
    golden = write_golden(tmp_path / "tiny.jsonl", items)
    home = tmp_path / "home"
    _imgrag(home, "index", str(corpus))

    out = tmp_path / "out"
    run = tmp_path / "run.jsonl"
    p = _imgrag(home, "eval", "retrieval", "--set", str(golden), "--folder", str(corpus), "--k", "5",
                "--run-out", str(run), "--out", str(out))
    assert "hybrid + region re-rank" in p.stdout and "nDCG@10" in p.stdout
    lines = [json.loads(x) for x in run.read_text().splitlines()]
    files = {s.file for s in specs}
    assert [ln["id"] for ln in lines] == [it.id for it in items]
    for ln in lines:
        assert set(ln) == {"id", "ranked"}
        assert ln["ranked"] and set(ln["ranked"]) <= files and len(ln["ranked"]) == len(set(ln["ranked"]))
    res = json.loads((out / "retrieval-tiny.json").read_text())
    assert set(res["configs"]) == {"image", "bm25", "text_vector", "region_text", "region_tile", "hybrid", "hybrid_rerank"}
    for c in res["configs"].values():
        assert all(0.0 <= v <= 1.0 for v in c["metrics"].values())
        assert c["latency"]["n"] == min(len(items), 12)
    assert res["configs"]["hybrid"]["ratio_vs_hybrid"]["ndcg@10"] == 1.0
    # two pages, every query names one of them: the full system must not rank them at random
    assert res["configs"]["hybrid_rerank"]["metrics"]["mrr@10"] > 0.75
    assert (out / "retrieval-tiny.png").stat().st_size > 1000

    # tune: one recall per query, every grid point re-ranked; the current setting is always a row
    p = _imgrag(home, "eval", "tune", "--set", str(golden), "--folder", str(corpus), "--grid", "bm25=1,3;rerank=0.6",
                "--out", str(out))
    tune = json.loads((out / "tune.json").read_text())
    assert tune["sets"] == ["tiny"] and len(tune["points"]) == 2 * 2  # bm25 {1,3} x rerank {0.3 (current), 0.6}
    assert sum(pt["current"] for pt in tune["points"]) == 1 and "dev mean" in p.stdout
    # the re-ranked current setting scores what `eval retrieval` measured for hybrid + re-rank
    cur = tune["current"]
    n = tune["queries"]["tiny"]
    both = (cur["dev"]["tiny"] * n["dev"] + cur["test"]["tiny"] * n["test"]) / (n["dev"] + n["test"])
    assert both == pytest.approx(res["configs"]["hybrid_rerank"]["metrics"]["ndcg@10"], abs=0.02)

    import importlib.util

    if importlib.util.find_spec("imgrag.agent.graph") is None or importlib.util.find_spec("imgrag.mcp_server.server") is None:
        pytest.skip("the bundled agent (agent.graph) is not in this checkout: answers eval not exercised")
    arun = tmp_path / "answers.jsonl"
    p = _imgrag(home, "eval", "answers", "--set", str(golden), "--folder", str(corpus), "--limit", "3",
                "--run-out", str(arun), "--out", str(out))
    assert "accuracy" in p.stdout
    alines = [json.loads(x) for x in arun.read_text().splitlines()]
    assert len(alines) == 3
    for ln in alines:
        assert {"id", "answer", "citations"} <= set(ln)
        for c in ln["citations"]:
            assert set(c) == {"image", "snippet"} and c["image"] in files
    ares = json.loads((out / "answers-tiny.json").read_text())
    assert ares["questions"] == 3 and ares["metrics"]["errors"] == 0.0


@pytest.mark.slow
@pytest.mark.es
@pytest.mark.timeout(2400)
def test_eval_retrieval_on_elasticsearch(tmp_path: Path) -> None:
    """`--backend elasticsearch` runs the same eval on the distributed store."""
    import uuid

    from conftest import es_test_url
    from imgrag.evals.datasets.contracts import make_contracts
    from imgrag.evals.golden.contracts import items_for

    url = es_test_url()
    prefix = f"imgrag-test-eval-{uuid.uuid4().hex[:10]}"
    corpus = tmp_path / "corpus"
    specs = make_contracts(corpus, 2, seed=12, variants=False, sidecar=None)
    texts = {s.file: "\n".join(ln.text for ln in s.lines) for s in specs}
    golden = write_golden(tmp_path / "es.jsonl", [it for s in specs for it in items_for(s, texts)][:6])
    home = tmp_path / "home"
    env = {"IMGRAG_ES_URL": url, "IMGRAG_ES_INDEX_PREFIX": prefix, "IMGRAG_ES_REPLICAS": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        # An eval over an index that never saw the folder says so instead of scoring zeros.
        empty = _imgrag(home, "eval", "retrieval", "--set", str(golden), "--backend", "elasticsearch",
                        "--folder", str(corpus), "--out", str(tmp_path / "out"), ok=False)
        assert empty.returncode != 0 and "holds no page under" in empty.stdout + empty.stderr
        assert "IMGRAG_BACKEND=elasticsearch imgrag index" in empty.stdout + empty.stderr
        _imgrag(home, "index", str(corpus), backend="elasticsearch")
        run = tmp_path / "run.jsonl"
        _imgrag(home, "eval", "retrieval", "--set", str(golden), "--backend", "elasticsearch", "--folder", str(corpus),
                "--run-out", str(run), "--out", str(tmp_path / "out"))
        res = json.loads((tmp_path / "out" / "retrieval-es.json").read_text())
        assert res["backend"] == "elasticsearch" and res["queries"] == 6
        assert all(json.loads(x)["ranked"] for x in run.read_text().splitlines())
    finally:
        from imgrag.indexing.config import Settings
        from imgrag.indexing.stores.elastic import ElasticStore

        es = ElasticStore(Settings(home=home, backend="elasticsearch", es_url=url, es_index_prefix=prefix))
        try:
            es.drop()
        finally:
            es.close()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_tune_grid_and_halves() -> None:
    from imgrag.evals.tune import half_of, parse_grid
    from imgrag.indexing.errors import ImgragError

    assert parse_grid("bm25=2,1,2; rerank=0.6") == {"bm25": [1.0, 2.0], "rerank": [0.6]}
    with pytest.raises(ImgragError, match="bad --grid"):
        parse_grid("colour=1")
    with pytest.raises(ImgragError, match="bad --grid value"):
        parse_grid("bm25=one")
    halves = [half_of(f"q{i}") for i in range(400)]
    assert halves == [half_of(f"q{i}") for i in range(400)]  # stable
    assert 150 < halves.count("dev") < 250  # about half each
