"""`crosslang`: the same question in Chinese and in English over the same contract pages.

Built from a built ``contracts`` corpus (its ground-truth sidecar), so it shares its index: every
page gets one information need written both ways, as people would ask it, and the pair has the same
relevant pages. ``kind`` is the direction, query language → page language (``zh-en``: a Chinese
question about an English page), so ``eval retrieval`` reports zh→en beside en→en on the same
pages, and en→zh beside zh→zh. ``template`` says which need:

- *place*: the contract type and where it was signed — "在新加坡签订的软件开发协议" / "software
  development agreement signed in Singapore". No word is shared across languages: only a
  translation (or the multilingual vectors) can match. Every page of that type signed there is
  relevant.
- *party*: the contract type and a party, the name as printed (nobody translates "Redwood Medical
  Supplies Inc."): "与Redwood Medical Supplies Inc.签订的软件开发协议". The name finds the page in
  either language; translated words must not drown it.

``split``: ``dev`` or ``heldout`` by a salted hash of the page file (as :mod:`evals.splits`), so
translation choices are tuned on dev and reported on held-out.

    python -m imgrag.evals.golden.crosslang ~/.cache/imgrag/eval/contracts-<hash> crosslang.jsonl [dev|heldout]

(the third argument writes one split only, so ``eval retrieval`` reports it alone).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from imgrag.evals.datasets.contracts import ContractSpec, read_contracts

from . import GoldenItem, write_golden

NAME = "crosslang"
SPLIT_SALT = "imgrag-crosslang-split-v1"
HELDOUT_PERCENT = 50

# How a person names each contract type and city in the other language.
TYPE_ZH = {
    "SOFTWARE DEVELOPMENT AGREEMENT": "软件开发协议",
    "SERVICE AGREEMENT": "服务协议",
    "CONSULTING AGREEMENT": "咨询协议",
    "EQUIPMENT LEASE AGREEMENT": "设备租赁协议",
    "PURCHASE AGREEMENT": "采购协议",
}
TYPE_EN = {
    "软件开发合同": "software development contract",
    "咨询服务合同": "consulting services contract",
    "技术服务合同": "technical services contract",
    "采购合同": "procurement contract",
    "货物买卖合同": "contract for the sale of goods",
    "设备租赁合同": "equipment rental contract",
}
CITY_ZH = {
    "Singapore": "新加坡", "Manchester": "曼彻斯特", "Toronto": "多伦多", "Dublin": "都柏林", "New York": "纽约",
    "Boston": "波士顿", "Sydney": "悉尼", "Chicago": "芝加哥", "London": "伦敦", "Hong Kong": "香港",
}  # fmt: skip
CITY_EN = {
    "北京": "Beijing", "上海": "Shanghai", "杭州": "Hangzhou", "南京": "Nanjing", "成都": "Chengdu", "深圳": "Shenzhen",
    "西安": "Xi'an", "天津": "Tianjin", "广州": "Guangzhou", "重庆": "Chongqing", "武汉": "Wuhan", "苏州": "Suzhou",
    "厦门": "Xiamen", "青岛": "Qingdao",
}  # fmt: skip


def split_of(file: str) -> str:
    h = int(hashlib.sha256(f"{SPLIT_SALT}:{Path(file).name}".encode()).hexdigest()[:12], 16) % 10_000
    return "heldout" if h < HELDOUT_PERCENT * 100 else "dev"


def _pick(options: list[str], key: str) -> str:
    return options[int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % len(options)]


def items_for(spec: ContractSpec, specs: list[ContractSpec]) -> list[GoldenItem]:
    """The pair of questions per need for one page (skipped where a name has no translation here)."""
    stem, page_lang = Path(spec.file).stem, spec.lang
    other = "zh" if page_lang == "en" else "en"
    same_place = [s.file for s in specs if (s.lang, s.contract_type, s.city) == (page_lang, spec.contract_type, spec.city)]
    if page_lang == "en":
        t_en, t_zh = spec.contract_type.lower(), TYPE_ZH.get(spec.contract_type)
        c_en, c_zh = spec.city, CITY_ZH.get(spec.city)
        party = {"en": f"the {t_en} with {spec.party_b}", "zh": f"与{spec.party_b}签订的{t_zh}"}
    else:
        t_zh, t_en = spec.contract_type, TYPE_EN.get(spec.contract_type)  # type: ignore[assignment]
        c_zh, c_en = spec.city, CITY_EN.get(spec.city)  # type: ignore[assignment]
        party = {"zh": f"{spec.party_a}的{t_zh}", "en": f"the {t_en} of {spec.party_a}"}
    needs: list[tuple[str, list[str], dict[str, str]]] = []
    if t_en and t_zh and c_en and c_zh and same_place[0] == spec.file:
        needs.append(("place", same_place, {
            "en": _pick([f"{t_en} signed in {c_en}", f"the {t_en} made in {c_en}"], stem),
            "zh": _pick([f"在{c_zh}签订的{t_zh}", f"{c_zh}签的{t_zh}"], stem),
        }))
    if t_en and t_zh:
        needs.append(("party", [spec.file], party))
    out = []
    for template, relevant, queries in needs:
        for q_lang in (page_lang, other):
            out.append(GoldenItem(
                id=f"{NAME}/{stem}/{template}/{q_lang}", query=queries[q_lang], relevant=relevant, lang=q_lang,
                kind=f"{q_lang}-{page_lang}", template=template, split=split_of(spec.file),  # type: ignore[call-arg]
            ))
    return out


def golden(contracts_dir: str | Path) -> list[GoldenItem]:
    specs = read_contracts(Path(contracts_dir) / "meta" / "contracts.jsonl")
    return [it for s in specs for it in items_for(s, specs)]


if __name__ == "__main__":  # pragma: no cover - a build script
    if len(sys.argv) not in (3, 4) or sys.argv[3:] not in ([], ["dev"], ["heldout"]):
        raise SystemExit("usage: python -m imgrag.evals.golden.crosslang CONTRACTS_DIR OUT.jsonl [dev|heldout]")
    items = [it for it in golden(sys.argv[1]) if sys.argv[3:] in ([], [getattr(it, "split", None)])]
    print(f"{len(items)} items → {write_golden(sys.argv[2], items)}")
