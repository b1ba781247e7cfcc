"""The article's two joint-retrieval cases as golden sets: `xray_reports` (DICOM studies with their
reports) and `defect_sops` (defect photos with the SOP pages for their parts).

Most queries can only be answered through a link: the words are on one side, the answer is the
other ("the image whose report describes a 7 mm nodule in the right upper lobe" → the CT, whose
pixels and tags say nothing of it; "the report for the SOMATOM Force exam at station EASTCT3" → the
report, which names neither). `imgrag eval retrieval --set xray_reports` scores them with links
followed (every configuration) and without (``hybrid_rerank_nolinks``): the difference is the point.
`describe` queries ("MRI of the left knee", "左膝关节磁共振") find the image by its tags alone.

Each item carries ``split``: ``dev`` or ``heldout``, from a salted hash of its study / part id (the
rule of :mod:`evals.splits`), so a setting tuned on dev is reported on held-out.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from imgrag.evals.datasets.defects import make_defects, read_defects
from imgrag.evals.datasets.radiology import make_studies, read_studies

from . import GoldenItem

SPLIT_SALT = "imgrag-cases-split-v1"


def split_of(key: str) -> Literal["dev", "heldout"]:
    """``dev`` or ``heldout`` for a study or part id: half each, stable."""
    return "dev" if int(hashlib.sha256(f"{SPLIT_SALT}:{key}".encode()).hexdigest()[:8], 16) % 2 == 0 else "heldout"


class XrayRecipe(BaseModel):
    studies: int = 20
    seed: int = 20240901


class DefectRecipe(BaseModel):
    parts: int = 20
    seed: int = 20240915


def build_xray(out_dir: str | Path, recipe: XrayRecipe) -> None:
    make_studies(out_dir, recipe.studies, recipe.seed)


def build_defects(out_dir: str | Path, recipe: DefectRecipe) -> None:
    make_defects(out_dir, recipe.parts, recipe.seed)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def xray_golden(out_dir: str | Path, recipe: XrayRecipe | None = None) -> list[GoldenItem]:
    out: list[GoldenItem] = []
    for s in read_studies(Path(out_dir) / "meta" / "studies.jsonl"):
        split = split_of(s.study_id)

        def add(kind: str, lang: str, query: str, relevant: str) -> None:
            out.append(GoldenItem(id=f"xray_reports/{s.study_id}/{kind}_{lang}", query=query, relevant=[relevant],
                                  lang=lang, kind=kind, split=split, link=s.link))  # type: ignore[call-arg]

        if s.lang == "zh":
            add("image_by_report", "zh", f"报告提到{s.key_finding}的影像", s.dicom)
            add("report_by_tags", "zh", f"{s.model}设备{s.station}工位{s.series_description}序列检查的报告", s.report)
        else:
            add("image_by_report", "en", f"the images of the study whose report describes {s.key_finding}", s.dicom)
            add("report_by_tags", "en", f"report for the {s.model} exam at station {s.station}, series {s.series_description}", s.report)
        add("describe", "en", _cap(s.exam_en), s.dicom)
        add("describe", "zh", s.exam_zh, s.dicom)
    return out


def defect_golden(out_dir: str | Path, recipe: DefectRecipe | None = None) -> list[GoldenItem]:
    out: list[GoldenItem] = []
    for d in read_defects(Path(out_dir) / "meta" / "defects.jsonl"):
        split = split_of(d.part_id)

        def add(kind: str, lang: str, query: str, relevant: str) -> None:
            out.append(GoldenItem(id=f"defect_sops/{d.part_id}/{kind}_{lang}", query=query, relevant=[relevant],
                                  lang=lang, kind=kind, split=split, link=d.link))  # type: ignore[call-arg]

        if d.lang == "zh":
            add("photo_by_sop", "zh", f"作业指导书要求{d.rework_zh}的零件的{d.defect_zh}照片", d.photo)
            add("sop_by_photo", "zh", f"{d.station}工位拍摄的批次{d.lot}零件的检验作业指导书", d.sop)
        else:
            add("photo_by_sop", "en", f"photo of the {d.defect_en} on the part whose SOP says to {d.rework_en}", d.photo)
            add("sop_by_photo", "en", f"inspection SOP for the part photographed at station {d.station}, lot {d.lot}", d.sop)
    return out
