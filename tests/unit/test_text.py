"""indexing.text: tokens, normalisation and dates (zh and en), and that the index, the planner, the
answerer and the answer metric read text and dates the same way."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from imgrag.indexing.text import (
    coverage,
    date_filter_tokens,
    date_tokens,
    dates_in_text,
    extract_dates,
    find_date,
    find_dates,
    fts_text,
    is_meaningful,
    keyword_query,
    last_day,
    normalize,
    query_terms,
    squash,
    tokens,
)

# ------------------------------------------------------------------------------------- tokens


def test_cjk_unigrams_and_bigrams_latin_words() -> None:
    assert tokens("甲方盖章") == ["甲", "方", "盖", "章", "甲方", "方盖", "盖章"]
    assert tokens("Party A, dated May 12, 2023") == ["party", "a", "dated", "may", "12", "2023"]
    assert tokens("ＡＢＣ１２３") == ["abc123"]  # full-width folded by NFKC
    assert fts_text("合同 Contract") == "合 同 合同 contract"


def test_query_terms_drop_stopwords_and_duplicates() -> None:
    assert query_terms("find the contract with the seal") == ["contract", "seal"]
    assert query_terms("盖章 盖章") == ["盖", "章", "盖章"]


def test_coverage_is_local_share_of_terms() -> None:
    terms = query_terms("甲方 盖章")
    assert coverage(terms, "甲方（盖章）：") == 1.0
    assert 0 < coverage(terms, "甲方：北京") < 1.0
    assert coverage(terms, "unrelated") == 0.0
    assert normalize("  A\tB  ") == "a b"


def test_keyword_query_drops_latin_stopwords_keeps_cjk() -> None:
    assert keyword_query("a cup of coffee") == "cup coffee"
    assert keyword_query("找出甲方盖章日期 of the contract") == "找出甲方盖章日期 contract"
    assert keyword_query("the a of") == ""


def test_is_meaningful() -> None:
    assert not is_meaningful("0") and not is_meaningful("12 3")
    assert is_meaningful("STOP") and is_meaningful("甲方盖章")


# ------------------------------------------------------------------------------------- normalisation


def test_normalize_folds_width_and_case_and_collapses_whitespace() -> None:
    assert normalize("  A\tB  ") == "a b"
    assert normalize("ＵＳＤ　６,３００") == "usd 6,300"  # full-width letters, digits and space
    assert normalize("甲方（盖章）：\n 杭州") == "甲方(盖章): 杭州"  # full-width brackets and colon


def test_squash_drops_every_space_so_ocr_spacing_never_decides_a_match() -> None:
    assert squash("甲方 ：杭州 万象\n医疗") == "甲方:杭州万象医疗"
    assert squash("Party  A\u3000Ltd") == "partyaltd"
    assert squash(" \n\t ") == ""
    assert squash("Ｓｕｍｍｉｔ Inc") == squash("summit\ninc")


def test_one_normaliser_for_the_index_the_agent_and_the_metrics() -> None:
    from imgrag.agent import evidence
    from imgrag.evals import metrics
    from imgrag.indexing import search

    assert evidence.squash is squash and metrics.squash is squash and search.squash is squash
    assert metrics.snippet_grounded("甲方：杭州 万象", "合同\n甲方：杭州万象医疗器械有限公司")
    assert not metrics.snippet_grounded("乙方", "甲方") and not metrics.snippet_grounded("", "x")


# ------------------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("text", "found", "expected", "precision"),
    [
        ("签订日期：2023年5月12日", "2023年5月12日", date(2023, 5, 12), "day"),
        ("日期 2023 年 5 月 12 日 盖章", "2023 年 5 月 12 日", date(2023, 5, 12), "day"),
        ("二〇二三年五月十二日", "二〇二三年五月十二日", date(2023, 5, 12), "day"),
        ("二○二三年十二月三十一日", "二○二三年十二月三十一日", date(2023, 12, 31), "day"),
        ("二〇二一年二月廿八号", "二〇二一年二月廿八号", date(2021, 2, 28), "day"),
        ("２０２３年５月１２日", "２０２３年５月１２日", date(2023, 5, 12), "day"),
        ("due 2023-05-12.", "2023-05-12", date(2023, 5, 12), "day"),
        ("(2023/5/12)", "2023/5/12", date(2023, 5, 12), "day"),
        ("2023.05.12", "2023.05.12", date(2023, 5, 12), "day"),
        ("13/05/2023", "13/05/2023", date(2023, 5, 13), "day"),
        ("05/13/2023", "05/13/2023", date(2023, 5, 13), "day"),
        ("12/05/2023", "12/05/2023", date(2023, 12, 5), "day"),  # ambiguous: month/day
        ("12.05.2023", "12.05.2023", date(2023, 5, 12), "day"),  # dotted: day.month
        ("Signed May 12, 2023 in Boston", "May 12, 2023", date(2023, 5, 12), "day"),
        ("MAY 12,2023", "MAY 12,2023", date(2023, 5, 12), "day"),
        ("12 May 2023", "12 May 2023", date(2023, 5, 12), "day"),
        ("Sept. 3 2021", "Sept. 3 2021", date(2021, 9, 3), "day"),
        ("on the 3rd of September, 2021", "3rd of September, 2021", date(2021, 9, 3), "day"),
        ("2023年5月", "2023年5月", date(2023, 5, 1), "month"),
        ("Invoice for May 2023", "May 2023", date(2023, 5, 1), "month"),
        ("2023年度报告", "2023年", date(2023, 1, 1), "year"),
    ],
)
def test_date_forms(text: str, found: str, expected: date, precision: str) -> None:
    (m,) = dates_in_text(text, 7)
    assert (m.text, m.date, m.precision, m.line_index) == (found, expected, precision, 7)


@pytest.mark.parametrize(
    "text",
    ["2023-02-30", "2023年2月30日", "二〇二三年二月三十日", "1899-12-31", "2101年1月1日", "13/13/2023",
     "version 2023.05.12.3", "tel 2023-05-12345", "amount 12.05.20231", "3年", "no date here"],
)
def test_impossible_or_non_dates_rejected(text: str) -> None:
    assert dates_in_text(text) == []


def test_dayfirst_switch() -> None:
    assert dates_in_text("03/04/2023")[0].date == date(2023, 3, 4)
    assert dates_in_text("03/04/2023", dayfirst=True)[0].date == date(2023, 4, 3)


def test_extract_dates_lines_and_order() -> None:
    lines = [
        "合同编号 HT-2023-117",  # a contract number, not a date
        "甲方（盖章）  2023年5月12日   乙方 2023-06-01",
        "",
        "Effective Jan 1, 2024",
    ]
    got = [(m.line_index, m.date) for m in extract_dates(lines)]
    assert got == [(1, date(2023, 5, 12)), (1, date(2023, 6, 1)), (3, date(2024, 1, 1))]


# ------------------------------------------------------------------------------------- date tokens


def test_date_tokens() -> None:
    assert date_tokens(date(2023, 5, 2)) == ["Y2023", "M2023-05", "D2023-05-02"]
    assert date_tokens(date(2023, 5, 1), "month") == ["Y2023", "M2023-05"]
    assert date_tokens(date(2023, 1, 1), "year") == ["Y2023"]


def test_filter_tokens_examples() -> None:
    assert date_filter_tokens(date(2023, 1, 1), date(2023, 12, 31)) == ["Y2023"]
    assert date_filter_tokens(date(2023, 5, 1), date(2023, 5, 31)) == ["M2023-05"]
    assert date_filter_tokens(date(2024, 2, 1), date(2024, 2, 29)) == ["M2024-02"]
    assert date_filter_tokens(date(2023, 2, 1), date(2023, 2, 27)) == [f"D2023-02-{d:02d}" for d in range(1, 28)]
    assert date_filter_tokens(date(2023, 5, 12), date(2023, 5, 12)) == ["D2023-05-12"]
    assert date_filter_tokens(date(2023, 5, 12), date(2023, 5, 11)) == []
    assert date_filter_tokens(date(2023, 3, 15), date(2024, 2, 10)) == (
        [f"D2023-03-{d}" for d in range(15, 32)]
        + [f"M2023-{m:02d}" for m in range(4, 13)]
        + ["M2024-01"]
        + [f"D2024-02-{d:02d}" for d in range(1, 11)]
    )
    assert date_filter_tokens(date(2022, 12, 31), date(2025, 1, 1)) == ["D2022-12-31", "Y2023", "Y2024", "D2025-01-01"]


def test_filter_tokens_open_ends() -> None:
    everything = date_filter_tokens(None, None)
    assert everything == [f"Y{y}" for y in range(1900, 2101)]
    assert date_filter_tokens(None, date(1901, 2, 3)) == ["Y1900", "M1901-01"] + [f"D1901-02-0{d}" for d in (1, 2, 3)]
    assert date_filter_tokens(date(2100, 12, 30), None) == ["D2100-12-30", "D2100-12-31"]
    assert date_filter_tokens(date(1800, 1, 1), date(1900, 1, 1)) == ["D1900-01-01"]


def test_filter_tokens_match_exactly_the_dates_in_range() -> None:
    """A date's tokens hit the filter iff the date lies in the range; whole periods are never split."""
    rng = random.Random(7)
    for _ in range(200):
        start = date(2019, 1, 1) + timedelta(days=rng.randrange(2000))
        end = start + timedelta(days=rng.randrange(900))
        tokens = set(date_filter_tokens(start, end))
        for _ in range(20):
            d = start + timedelta(days=rng.randrange(-60, (end - start).days + 60))
            assert bool(tokens & set(date_tokens(d))) == (start <= d <= end), (start, end, d)
        months = [t for t in tokens if t.startswith("M")]
        assert all(sum(m.startswith(f"M{y}") for m in months) < 12 for y in range(2019, 2027))
        days = [t for t in tokens if t.startswith("D")]
        assert len(days) <= 60  # at most one partial month at each end


# ------------------------------------------------------------------------------------- spans and questions


def test_spans_cover_what_was_written_and_never_overlap() -> None:
    text = "签订于二〇二三年五月十二日，生效 2023-06-01，May 2024 到期"
    spans = find_dates(text)
    assert [(text[s.start : s.end], s.date, s.precision) for s in spans] == [
        ("二〇二三年五月十二日", date(2023, 5, 12), "day"),
        ("2023-06-01", date(2023, 6, 1), "day"),
        ("May 2024", date(2024, 5, 1), "month"),
    ]
    assert [s.last for s in spans] == [date(2023, 5, 12), date(2023, 6, 1), date(2024, 5, 31)]


def test_last_day_of_a_period() -> None:
    assert last_day(date(2024, 2, 1), "month") == date(2024, 2, 29)
    assert last_day(date(2023, 2, 1), "month") == date(2023, 2, 28)
    assert last_day(date(2023, 1, 1), "year") == date(2023, 12, 31)
    assert last_day(date(2023, 5, 12), "day") == date(2023, 5, 12)


@pytest.mark.parametrize(
    ("text", "page", "asked"),
    [
        ("contracts signed in 2021", [], [(date(2021, 1, 1), "year")]),  # a bare year: only in a question
        ("invoices of 2023-05", [], [(date(2023, 5, 1), "month")]),
        ("page 2023-13", [], []),
        ("合同 HT-2023-0012 的金额", [], []),  # a contract number is not a date, page or question
        ("FY2023 report", [], []),
        ("dated 05/12/2023", [(date(2023, 5, 12), "day")], [(date(2023, 5, 12), "day")]),  # not "the year 2023"
        ("二〇二三年五月的合同", [(date(2023, 5, 1), "month")], [(date(2023, 5, 1), "month")]),
    ],
)
def test_a_question_also_reads_bare_years_and_year_months(text: str, page: list, asked: list) -> None:
    assert [(s.date, s.precision) for s in find_dates(text)] == page
    assert [(s.date, s.precision) for s in find_dates(text, question=True)] == asked


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("签订日期：2024年12月15日", "2024年12月15日"),
        ("签订日期：2023年5月12号", "2023年5月12号"),
        ("落款 二〇二三年五月十二日", "二〇二三年五月十二日"),
        ("This Agreement is dated September 21, 2023.", "September 21, 2023"),
        ("Signed 12.05.2023 in Basel", "12.05.2023"),
        ("Invoice for May 2023, paid 2023-06-02", "2023-06-02"),  # a month is not a "when" value
        ("2023年5月 月报", None),
        ("ref 2023-13-45", None),  # impossible
        ("no date", None),
    ],
)
def test_find_date_is_the_first_full_date_as_written(text: str, value: str | None) -> None:
    assert find_date(text) == value


# ------------------------------------------------------------------------------------- one reading everywhere

_FULL_DATES = [
    "2023年5月12日", "2023 年 5 月 12 日", "2023年05月12号", "二〇二三年五月十二日", "２０２３年５月１２日",
    "May 12, 2023", "May 12th 2023", "12 May 2023", "12th of May, 2023", "2023-05-12", "2023/5/12",
    "2023.05.12", "05/12/2023", "12.05.2023",
]  # fmt: skip


@pytest.mark.parametrize("written", _FULL_DATES)
def test_index_planner_answerer_and_metric_read_a_date_alike(written: str) -> None:
    """The date a page is filtered by, the filter a question asks for, the value the answerer
    quotes and the date the answer metric compares are one date."""
    from imgrag.agent.planner import extract_dates as question_filters
    from imgrag.evals.metrics import answer_correct, normalize_dates

    (mention,) = dates_in_text(f"签订日期：{written}")
    assert mention.date == date(2023, 5, 12) and mention.precision == "day"
    filters, rest = question_filters(f"contracts signed on {written}")
    assert filters == {"date_from": "2023-05-12", "date_to": "2023-05-12"} and rest == "contracts signed"
    assert find_date(f"Date: {written}.") == written
    assert normalize_dates(written).strip() == "2023-05-12"
    assert answer_correct(f"签订日期：{written}", "2023-05-12")


def test_metric_leaves_months_years_and_non_dates_alone() -> None:
    from imgrag.evals.metrics import normalize_dates

    assert normalize_dates("May 2023") == "May 2023"
    assert normalize_dates("2023年") == "2023年"
    assert normalize_dates("Table 1.10, ref 2023-13-45") == "Table 1.10, ref 2023-13-45"
    assert normalize_dates("from 2023-05-12 to 13/05/2023") == "from  2023-05-12  to  2023-05-13 "
