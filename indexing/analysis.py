"""Tokenising mixed Chinese/English text the same way for indexing, queries and snippets.

LanceDB's full-text index has no CJK analyser, so we hand it pre-tokenised text: latin words
lower-cased, every CJK character as a unigram plus each adjacent pair as a bigram. Bigrams give
BM25 phrase-like precision ("盖章" beats documents that merely contain 盖 and 章); unigrams keep
recall for single-character words and OCR errors.
"""

from __future__ import annotations

import re
import unicodedata

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[0-9a-z]+(?:[.,'][0-9a-z]+)*")
_STOP = frozenset(
    "a an and are as at be by for from in is it of on or the to was were with what which who whom where when how "
    "find show me please image images photo picture document page".split()
)


def normalize(text: str) -> str:
    """NFKC (full-width → half-width), lower case, collapse whitespace: how snippets are compared."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


def tokens(text: str, *, drop_stopwords: bool = False) -> list[str]:
    out: list[str] = []
    for m in _TOKEN.finditer(normalize(text)):
        tok = m.group(0)
        if "\u3400" <= tok[0] <= "\ufaff":
            out.extend(tok)
            out.extend(tok[i : i + 2] for i in range(len(tok) - 1))
        elif not (drop_stopwords and tok in _STOP):
            out.append(tok)
    return out


def fts_text(text: str) -> str:
    """The whitespace-separated token string stored in the embedded store's full-text column."""
    return " ".join(tokens(text))


def is_meaningful(text: str, min_chars: int = 4) -> bool:
    """Whether OCR text says anything: a stray "0" read off a photo must not get a text vector,
    or it ranks for every query on the text routes."""
    return sum(ch.isalpha() for ch in text) >= min_chars


def keyword_query(query: str) -> str:
    """The query for full-text routes: latin stop words dropped ("a", "of", "find" match every
    English page and would let BM25 rank by noise); CJK text is kept whole for the analyser."""
    words = []
    for m in _TOKEN.finditer(normalize(query)):
        tok = m.group(0)
        if "\u3400" <= tok[0] <= "\ufaff" or tok not in _STOP:
            words.append(tok)
    return " ".join(words)


def query_terms(query: str) -> list[str]:
    """Distinct query tokens without stop words, in order."""
    return list(dict.fromkeys(tokens(query, drop_stopwords=True)))


def coverage(query_terms_: list[str], text: str) -> float:
    """Share of the query's terms found in ``text`` (0..1): how well one region answers the query."""
    if not query_terms_:
        return 0.0
    have = set(tokens(text))
    return sum(t in have for t in query_terms_) / len(query_terms_)
