"""Radiology studies with their reports: DICOM images (generated body-part phantoms carrying real
tags) and each study's report rendered as a page, in Chinese or English.

    make_studies(out_dir, n, seed) -> list[StudySpec]   # writes out_dir/corpus/..., out_dir/meta/studies.jsonl

Every study is one exam (CR / DX / CT / MR / US / MG of a body part, a side and a view) whose DICOM
file carries modality, body part, view, laterality, study and series description, scanner, station,
institution, study date, accession number, UIDs and (personal) patient fields; pixels are 12/16-bit
phantoms of that body part, stored uncompressed, RLE or JPEG 2000, MONOCHROME1 for CR, one
enhanced multi-frame MR with per-frame windows. The report (a PNG page) states the exam, clinical
history and findings; one finding per study is unique in the corpus, so a query quoting it has one
answer. How a report is tied to its images varies, to exercise every way imgrag links them:

- ``accession``: images in ``images/``, reports in ``reports/``; the report prints the accession number;
- ``stem``: ``studies/<id>.dcm`` beside ``studies/<id>.report.png``;
- ``case``: both in ``cases/<id>/`` with a ``.imgrag-case`` marker.

Output is a pure function of (seed, n, installed fonts, library versions).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel

from .contracts import MARGIN_X
from .contracts import _Page as TextPage  # the contract generator's text-page drawer: fonts, wrapping, boxes
from .sidecars import read_sidecar, write_sidecar

SIDECAR = "studies.jsonl"
Link = Literal["accession", "stem", "case"]


class StudySpec(BaseModel):
    study_id: str
    lang: Literal["zh", "en"]
    link: Link
    modality: str
    body_part: str
    laterality: str = ""
    view: str = ""
    exam_en: str  # plain description, as a person would ask for it
    exam_zh: str
    study_description: str
    series_description: str
    manufacturer: str
    model: str
    station: str
    institution: str
    study_date: date
    accession: str
    study_uid: str
    patient_name: str
    patient_id: str
    frames: int = 1
    transfer_syntax: str
    photometric: str
    dicom: str  # path relative to the corpus folder
    report: str
    findings: list[str]
    key_finding: str  # the finding unique to this study (in the report's language)
    impression: str


# -- the exam catalogue ---------------------------------------------------------------------------
# (modality, body part, sides, view, exam en, exam zh, study description, series descriptions, findings key)
_EXAMS: list[tuple[str, str, str, str, str, str, str, list[str], str]] = [
    ("CR", "CHEST", "", "PA", "chest X-ray, PA view", "胸部正位X光片", "CHEST PA", ["PA ERECT"], "chest"),
    ("DX", "CHEST", "", "LL", "lateral chest X-ray", "胸部侧位X光片", "CHEST LATERAL", ["LAT LEFT"], "chest"),
    ("DX", "KNEE", "LR", "LL", "lateral X-ray of the {side} knee", "{side}膝关节侧位X光片", "KNEE {SIDE} LAT", ["LAT"], "knee"),
    ("DX", "HAND", "LR", "PA", "X-ray of the {side} hand", "{side}手正位X光片", "HAND {SIDE} PA", ["PA"], "hand"),
    ("CT", "CHEST", "", "", "CT of the chest", "胸部CT平扫", "CT CHEST WO CONTRAST", ["AX 1.25 LUNG", "AX 5MM MEDIASTINUM"], "chest"),
    ("CT", "HEAD", "", "", "CT of the head without contrast", "头颅CT平扫", "CT HEAD WO", ["AX BRAIN 5MM"], "head"),
    ("CT", "ABDOMEN", "", "", "CT of the abdomen with contrast", "腹部增强CT", "CT ABDOMEN W CONTRAST", ["AX PORTAL VENOUS"], "abdomen"),
    ("CT", "LSPINE", "", "", "CT of the lumbar spine", "腰椎CT", "CT LUMBAR SPINE", ["SAG BONE"], "spine"),
    ("CT", "SINUS", "", "", "CT of the paranasal sinuses", "鼻窦CT", "CT SINUS", ["COR BONE"], "sinus"),
    ("MR", "KNEE", "LR", "", "MRI of the {side} knee", "{side}膝关节磁共振", "MR KNEE {SIDE}", ["SAG PD FS", "COR T1"], "knee_mr"),
    ("MR", "BRAIN", "", "", "MRI of the brain", "头颅磁共振平扫", "MR BRAIN WO", ["AX T2 TSE"], "head"),
    ("MR", "LSPINE", "", "", "MRI of the lumbar spine", "腰椎磁共振", "MR LUMBAR SPINE", ["SAG T2"], "spine"),
    ("MR", "SHOULDER", "LR", "", "MRI of the {side} shoulder", "{side}肩关节磁共振", "MR SHOULDER {SIDE}", ["COR PD FS"], "shoulder"),
    ("US", "LIVER", "", "", "ultrasound of the liver", "肝脏超声", "US ABDOMEN LIVER", ["LIVER"], "liver_us"),
    ("US", "THYROID", "", "", "thyroid ultrasound", "甲状腺超声", "US THYROID", ["THYROID"], "thyroid"),
    ("MG", "BREAST", "LR", "CC", "mammogram of the {side} breast", "{side}侧乳腺钼靶", "MAMMO {SIDE} CC", ["CC"], "breast"),
]
_SIDES = {"L": ("left", "左", "LEFT"), "R": ("right", "右", "RIGHT")}

# Findings: (en, zh) templates; {size} mm, {side}/{side_zh}, {level}, {seg}. The first of a study is its key finding.
_FINDINGS: dict[str, list[tuple[str, str]]] = {
    "chest": [
        ("a {size} mm solid nodule in the {side} upper lobe", "{side_zh}肺上叶见一大小约{size}毫米的实性结节"),
        ("a {size} mm ground-glass opacity in the {side} lower lobe", "{side_zh}肺下叶见一大小约{size}毫米的磨玻璃影"),
        ("patchy consolidation in the {side} lower lobe, consistent with pneumonia", "{side_zh}肺下叶斑片状实变影，考虑肺炎"),
        ("a small {side} pleural effusion blunting the costophrenic angle", "{side_zh}侧少量胸腔积液，肋膈角变钝"),
        ("a healed fracture of the {side} sixth rib", "{side_zh}侧第六肋陈旧性骨折"),
    ],
    "head": [
        ("a {size} mm chronic lacunar infarct in the {side} basal ganglia", "{side_zh}侧基底节区见一约{size}毫米的陈旧性腔隙性梗死灶"),
        ("a {size} mm calcified meningioma along the {side} frontal convexity", "{side_zh}额部凸面见一约{size}毫米的钙化脑膜瘤"),
        ("mild periventricular white matter hyperintensity", "双侧脑室旁轻度白质高信号"),
    ],
    "abdomen": [
        ("a {size} mm hypodense cyst in segment {seg} of the liver", "肝{seg}段见一大小约{size}毫米的低密度囊肿"),
        ("a {size} mm stone in the lower pole of the {side} kidney", "{side_zh}肾下极见一约{size}毫米的结石"),
        ("a {size} mm enhancing lesion in the tail of the pancreas", "胰尾见一约{size}毫米的强化病灶"),
    ],
    "spine": [
        ("a {size} mm disc protrusion at L{level}-L{level1}", "L{level}-L{level1}椎间盘突出约{size}毫米"),
        ("a compression fracture of the L{level} vertebral body", "L{level}椎体压缩性骨折"),
        ("spondylolisthesis of L{level} on L{level1}", "L{level}椎体相对L{level1}滑脱"),
    ],
    "sinus": [
        ("mucosal thickening of the {side} maxillary sinus", "{side_zh}侧上颌窦黏膜增厚"),
        ("a {size} mm retention cyst in the {side} maxillary sinus", "{side_zh}侧上颌窦见一约{size}毫米的潴留囊肿"),
    ],
    "knee": [
        ("a non-displaced fracture of the lateral tibial plateau", "胫骨外侧平台无移位骨折"),
        ("a {size} mm joint effusion in the suprapatellar recess", "髌上囊见约{size}毫米的关节积液"),
        ("a {size} mm osteophyte at the medial femoral condyle", "股骨内侧髁见一约{size}毫米的骨赘"),
    ],
    "knee_mr": [
        ("a horizontal tear of the posterior horn of the medial meniscus", "内侧半月板后角水平撕裂"),
        ("a partial tear of the anterior cruciate ligament", "前交叉韧带部分撕裂"),
        ("a {size} mm bone bruise of the lateral femoral condyle", "股骨外侧髁约{size}毫米的骨挫伤"),
    ],
    "hand": [
        ("a non-displaced fracture of the fifth metacarpal neck", "第五掌骨颈无移位骨折"),
        ("erosions at the second metacarpophalangeal joint", "第二掌指关节骨质侵蚀"),
    ],
    "shoulder": [
        ("a full-thickness tear of the supraspinatus tendon", "冈上肌腱全层撕裂"),
        ("a {size} mm effusion in the subacromial bursa", "肩峰下滑囊见约{size}毫米积液"),
    ],
    "liver_us": [
        ("a {size} mm hyperechoic haemangioma in segment {seg} of the liver", "肝{seg}段见一约{size}毫米的高回声血管瘤"),
        ("diffuse fatty infiltration of the liver", "弥漫性脂肪肝"),
    ],
    "thyroid": [
        ("a {size} mm hypoechoic nodule in the {side} lobe of the thyroid, TI-RADS 4", "甲状腺{side_zh}叶见一约{size}毫米的低回声结节，TI-RADS 4类"),
        ("a {size} mm colloid cyst in the {side} lobe of the thyroid", "甲状腺{side_zh}叶见一约{size}毫米的胶质囊肿"),
    ],
    "breast": [
        ("a {size} mm cluster of microcalcifications in the upper outer quadrant, BI-RADS 4", "外上象限见约{size}毫米簇状微钙化，BI-RADS 4类"),
        ("a {size} mm circumscribed mass in the lower inner quadrant, BI-RADS 3", "内下象限见一约{size}毫米边界清楚的肿块，BI-RADS 3类"),
    ],
}
_NORMAL: dict[str, tuple[str, str]] = {
    "chest": ("The heart size is normal. No pneumothorax.", "心影大小正常，未见气胸。"),
    "head": ("No acute intracranial haemorrhage. The ventricles are normal in size.", "未见急性颅内出血，脑室大小正常。"),
    "abdomen": ("The spleen and adrenal glands are unremarkable.", "脾脏及双侧肾上腺未见异常。"),
    "spine": ("Vertebral alignment is otherwise preserved.", "其余椎体排列整齐。"),
    "sinus": ("The ostiomeatal units are patent.", "窦口鼻道复合体通畅。"),
    "knee": ("Joint space is preserved.", "关节间隙正常。"),
    "knee_mr": ("The collateral ligaments are intact.", "内外侧副韧带完整。"),
    "hand": ("Bone density is normal.", "骨密度正常。"),
    "shoulder": ("The acromioclavicular joint is normal.", "肩锁关节未见异常。"),
    "liver_us": ("The gallbladder and bile ducts are normal.", "胆囊及胆管未见异常。"),
    "thyroid": ("No enlarged cervical lymph nodes.", "颈部未见肿大淋巴结。"),
    "breast": ("No skin thickening or nipple retraction.", "皮肤无增厚，乳头无内陷。"),
}
_HISTORY = [("pain for two weeks", "疼痛两周"), ("follow-up", "复查"), ("trauma", "外伤后"), ("screening", "体检筛查"),
            ("fever and cough", "发热、咳嗽"), ("abnormal laboratory results", "化验结果异常")]
_SCANNERS = {
    "CT": [("SIEMENS", "SOMATOM Force"), ("GE MEDICAL SYSTEMS", "Revolution CT"), ("Canon Medical Systems", "Aquilion ONE"),
           ("United Imaging", "uCT 760"), ("Philips", "Brilliance iCT")],
    "MR": [("SIEMENS", "MAGNETOM Vida"), ("GE MEDICAL SYSTEMS", "SIGNA Premier"), ("Philips", "Ingenia Elition"),
           ("United Imaging", "uMR 780")],
    "CR": [("Carestream Health", "DRX-Evolution"), ("FUJIFILM", "FCR Profect")],
    "DX": [("Philips", "DigitalDiagnost C90"), ("SIEMENS", "Ysio Max"), ("Carestream Health", "DRX-Revolution")],
    "US": [("Mindray", "Resona 7"), ("GE Healthcare", "LOGIQ E10"), ("Philips", "EPIQ Elite")],
    "MG": [("Hologic", "Selenia Dimensions"), ("GE MEDICAL SYSTEMS", "Senographe Pristina")],
}
_SITES = ["EAST", "WEST", "NORTH", "SOUTH", "RIVER", "HILL", "LAKE", "PARK", "BAY", "OAK", "PINE", "CEDAR"]
_INSTITUTIONS = [("Riverside General Hospital", "滨江总医院"), ("Northfield Medical Centre", "北田医学中心"),
                 ("St. Anne's Hospital", "圣安妮医院"), ("Lakeview Clinic", "湖景门诊部")]
_EN_NAMES = ["WANG^HUA", "SMITH^JOHN", "GARCIA^MARIA", "CHEN^LI", "BROWN^EMMA", "LIU^YANG", "JONES^OLIVER", "ZHAO^MIN"]
_ZH_NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强"]
_TS = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1"]
_SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4", "CR": "1.2.840.10008.5.1.4.1.1.1",
              "DX": "1.2.840.10008.5.1.4.1.1.1.1", "US": "1.2.840.10008.5.1.4.1.1.6.1", "MG": "1.2.840.10008.5.1.4.1.1.1.2"}
_ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


# -- pixels ---------------------------------------------------------------------------------------
def _ellipse(img: np.ndarray, cx: float, cy: float, rx: float, ry: float, value: float, angle: float = 0.0) -> None:
    cv2.ellipse(img, (round(cx), round(cy)), (max(1, round(rx)), max(1, round(ry))), angle, 0, 360, float(value), -1)


def _rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, value: float) -> None:
    cv2.rectangle(img, (round(x0), round(y0)), (round(x1), round(y1)), float(value), -1)


def _density(part: str, size: tuple[int, int], rng: np.random.Generator, side: str) -> np.ndarray:
    """A density map 0..1 of a body part (air 0, fat .35, soft tissue .5, fluid .45, bone .9)."""
    h, w = size
    d = np.zeros((h, w), np.float32)
    cx, cy = w / 2, h / 2
    flip = -1 if side == "L" else 1
    if part in ("CHEST", "LUNG"):
        _ellipse(d, cx, cy, w * 0.44, h * 0.34, 0.5)
        _ellipse(d, cx - w * 0.19, cy - h * 0.02, w * 0.15, h * 0.25, 0.05)
        _ellipse(d, cx + w * 0.19, cy - h * 0.02, w * 0.15, h * 0.25, 0.05)
        _ellipse(d, cx + w * 0.04, cy + h * 0.04, w * 0.1, h * 0.11, 0.52)
        _ellipse(d, cx, cy + h * 0.26, w * 0.05, h * 0.05, 0.9)
        _ellipse(d, cx + flip * w * 0.2, cy - h * 0.12, w * 0.012 + 2, w * 0.012 + 2, 0.5)  # the nodule
    elif part in ("HEAD", "BRAIN", "SINUS"):
        _ellipse(d, cx, cy, w * 0.36, h * 0.44, 0.9)
        _ellipse(d, cx, cy, w * 0.33, h * 0.41, 0.518)  # brain ~35 HU
        _ellipse(d, cx - w * 0.05, cy - h * 0.03, w * 0.03, h * 0.1, 0.504, 12)  # ventricles ~8 HU
        _ellipse(d, cx + w * 0.05, cy - h * 0.03, w * 0.03, h * 0.1, 0.504, -12)
        if part == "SINUS":
            _ellipse(d, cx - w * 0.12, cy + h * 0.15, w * 0.07, h * 0.08, 0.02)
            _ellipse(d, cx + w * 0.12, cy + h * 0.15, w * 0.07, h * 0.08, 0.02)
    elif part in ("ABDOMEN", "LIVER"):
        _ellipse(d, cx, cy, w * 0.45, h * 0.36, 0.4)
        _ellipse(d, cx - w * 0.18, cy - h * 0.04, w * 0.2, h * 0.2, 0.55)
        _ellipse(d, cx + w * 0.2, cy + h * 0.06, w * 0.05, h * 0.08, 0.56)
        _ellipse(d, cx - w * 0.12, cy + h * 0.1, w * 0.05, h * 0.08, 0.56)
        _ellipse(d, cx, cy + h * 0.22, w * 0.05, h * 0.05, 0.9)
        _ellipse(d, cx - w * 0.22, cy - h * 0.08, w * 0.03, h * 0.03, 0.45)
    elif part in ("LSPINE", "SPINE"):
        for i in range(5):
            y0 = h * (0.1 + i * 0.17)
            _rect(d, cx - w * 0.12, y0, cx + w * 0.12, y0 + h * 0.12, 0.8)
            _rect(d, cx - w * 0.11, y0 + h * 0.125, cx + w * 0.11, y0 + h * 0.165, 0.47)
        _rect(d, cx + w * 0.14, 0, cx + w * 0.2, h, 0.45)
    elif part in ("KNEE", "SHOULDER", "HAND"):
        _ellipse(d, cx, cy, w * 0.3, h * 0.48, 0.42)
        if part == "HAND":
            for i in range(5):
                x = cx + (i - 2) * w * 0.1
                _rect(d, x - w * 0.025, h * 0.1, x + w * 0.025, cy, 0.88)
            _rect(d, cx - w * 0.22, cy, cx + w * 0.22, h * 0.85, 0.86)
        elif part == "SHOULDER":
            _ellipse(d, cx + flip * w * 0.05, cy - h * 0.1, w * 0.17, h * 0.17, 0.88)
            _rect(d, cx - w * 0.06 + flip * w * 0.05, cy, cx + w * 0.06 + flip * w * 0.05, h, 0.87)
        else:
            _ellipse(d, cx, cy - h * 0.12, w * 0.15, h * 0.1, 0.9)
            _rect(d, cx - w * 0.09, 0, cx + w * 0.09, cy - h * 0.12, 0.9)
            _rect(d, cx - w * 0.13, cy + h * 0.02, cx + w * 0.13, cy + h * 0.08, 0.9)
            _rect(d, cx - w * 0.08, cy + h * 0.08, cx + w * 0.08, h, 0.9)
            _ellipse(d, cx + flip * w * 0.2, cy - h * 0.1, w * 0.04, h * 0.08, 0.88)
    elif part == "BREAST":
        _ellipse(d, 0 if side == "L" else w, cy, w * 0.8, h * 0.45, 0.35)
        for _ in range(25):
            _ellipse(d, rng.uniform(0.1, 0.6) * w if side == "L" else rng.uniform(0.4, 0.9) * w, rng.uniform(0.25, 0.75) * h,
                     rng.uniform(4, 14), rng.uniform(4, 14), 0.5, rng.uniform(0, 180))
        for _ in range(6):
            _ellipse(d, w * (0.35 if side == "L" else 0.65) + rng.normal(0, 4), cy - h * 0.15 + rng.normal(0, 4), 1, 1, 0.95)
    elif part == "THYROID":
        _ellipse(d, cx - w * 0.15, cy, w * 0.12, h * 0.2, 0.55)
        _ellipse(d, cx + w * 0.15, cy, w * 0.12, h * 0.2, 0.55)
        _ellipse(d, cx + flip * w * 0.15, cy, w * 0.03, h * 0.03, 0.3)
    else:
        _ellipse(d, cx, cy, w * 0.4, h * 0.4, 0.5)
    return cv2.GaussianBlur(d, (0, 0), 1.2)


def _pixels(spec: StudySpec, rng: np.random.Generator, frames: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Stored pixel values (frames, rows, cols[, 3]) and the image pixel module attributes."""
    m = spec.modality
    size = {"CR": (360, 300), "DX": (360, 300), "MG": (360, 280), "US": (240, 320)}.get(m, (256, 256))
    side = spec.laterality
    if m == "US":
        d = _density(spec.body_part, size, rng, side)
        h, w = size
        yy, xx = np.mgrid[0:h, 0:w]
        ang = np.arctan2(xx - w / 2, yy + 20)
        fan = (np.abs(ang) < 0.6) & (yy > 10)
        speckle = rng.rayleigh(0.35, size).astype(np.float32)
        img = np.clip((0.25 + d) * speckle * fan * 255, 0, 255).astype(np.uint8)
        rgb = np.repeat(img[..., None], 3, axis=2)
        cv2.putText(rgb, spec.series_description, (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (230, 230, 230), 1)
        cv2.putText(rgb, spec.model, (8, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (200, 200, 60), 1)
        return rgb[None], {"PhotometricInterpretation": "RGB", "SamplesPerPixel": 3, "BitsAllocated": 8, "BitsStored": 8,
                           "HighBit": 7, "PixelRepresentation": 0, "PlanarConfiguration": 0}
    out = []
    for f in range(frames):
        d = _density(spec.body_part, size, rng, side)
        if f:
            d = np.roll(d, 3 * f, axis=0)
        if m in ("CR", "DX", "MG"):
            d = cv2.GaussianBlur(d, (0, 0), 3.0)  # a projection, not a slice
            v = np.clip(d + rng.normal(0, 0.015, size), 0, 1) * 4095
            if spec.photometric == "MONOCHROME1":
                v = 4095 - v
            out.append(v.astype(np.uint16))
        elif m == "CT":
            hu = d * 2000 - 1000 + rng.normal(0, 12, size)
            out.append(np.clip(hu + 1024, 0, 4095).astype(np.uint16))
        else:  # MR: fluid bright, bone dark
            sig = np.where(d > 0.8, 0.15, np.where(d > 0.02, 1.0 - np.abs(d - 0.45) * 1.4, 0.0))
            out.append(np.clip(sig * 1400 + rng.normal(0, 20, size), 0, 4095).astype(np.uint16))
    attrs = {"PhotometricInterpretation": spec.photometric, "SamplesPerPixel": 1, "BitsAllocated": 16, "BitsStored": 12,
             "HighBit": 11, "PixelRepresentation": 0}
    return np.stack(out), attrs


_WINDOWS = {("CT", "CHEST"): (-600, 1500), ("CT", "HEAD"): (40, 80), ("CT", "ABDOMEN"): (50, 400),
            ("CT", "LSPINE"): (400, 1800), ("CT", "SINUS"): (400, 2000)}


def write_dicom(spec: StudySpec, path: Path, rng: np.random.Generator, index: int) -> None:
    """The study's DICOM file: its tags, its phantom pixels, its transfer syntax."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    enhanced = spec.frames > 1
    pixels, attrs = _pixels(spec, rng, spec.frames)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: Chinese study descriptions
    sop_class = _ENHANCED_MR if enhanced else _SOP_CLASS[spec.modality]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[spec.study_uid, "sop"])
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[spec.study_uid, "series"])
    ds.Modality = spec.modality
    ds.BodyPartExamined = spec.body_part
    if spec.view:
        ds.ViewPosition = spec.view
    if spec.laterality:
        ds.ImageLaterality = spec.laterality
    ds.StudyDescription = spec.study_description
    ds.SeriesDescription = spec.series_description
    ds.ProtocolName = spec.series_description
    ds.Manufacturer = spec.manufacturer
    ds.ManufacturerModelName = spec.model
    ds.StationName = spec.station
    ds.InstitutionName = spec.institution
    ds.StudyDate = ds.SeriesDate = spec.study_date.strftime("%Y%m%d")
    ds.StudyTime = "093000"
    ds.AccessionNumber = spec.accession
    ds.StudyID = spec.study_id
    ds.SeriesNumber = 1 + index % 5
    ds.InstanceNumber = 1
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = f"{1940 + index % 50}0{1 + index % 9}1{index % 9}"
    ds.PatientSex = "MF"[index % 2]
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.Rows, ds.Columns = int(pixels.shape[1]), int(pixels.shape[2])
    window = _WINDOWS.get((spec.modality, spec.body_part))
    if spec.modality == "CT":
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    if enhanced:
        ds.NumberOfFrames = spec.frames
        shared = Dataset()
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = 700, 1400
        shared.FrameVOILUTSequence = [voi]
        ds.SharedFunctionalGroupsSequence = [shared]
        per = []
        for f in range(spec.frames):
            item, pos = Dataset(), Dataset()
            pos.ImagePositionPatient = [0, 0, 5 * f]
            item.PlanePositionSequence = [pos]
            per.append(item)
        ds.PerFrameFunctionalGroupsSequence = per
    elif window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    elif spec.modality in ("CR", "DX", "MG") and index % 3 == 0:
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        ds.VOILUTFunction = "SIGMOID"
    elif spec.modality in ("DX", "MG") and index % 3 == 1:
        lut = Dataset()
        lut.LUTDescriptor = [4096, 0, 16]
        lut.add_new(0x00283006, "US", (np.linspace(0, 1, 4096) ** 0.8 * 65535).astype(np.uint16).tolist())  # LUT Data
        ds.VOILUTSequence = [lut]
    # (else: no window; the percentile window applies)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    arr = pixels if enhanced else pixels[0]
    ds.PixelData = arr.tobytes()
    ts = UID(spec.transfer_syntax)
    if ts != ExplicitVRLittleEndian and spec.modality != "US":
        kwargs = {"encoding_plugin": "pylibjpeg"} if ts.is_compressed and "4.90" in str(ts) else {}
        ds.compress(ts, arr, generate_instance_uid=False, **kwargs)  # same bytes for the same seed
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


# -- reports --------------------------------------------------------------------------------------
def render_report(spec: StudySpec, path: Path, rng: np.random.Generator) -> None:
    """The report page: institution, patient line, accession (when it is how the study is linked), exam,
    history, findings, impression. Cropped to its text, so OCR reads a short page."""
    zh = spec.lang == "zh"
    p = TextPage(spec.lang, rng)
    inst = next((z if zh else e) for e, z in _INSTITUTIONS if e == spec.institution)
    y = 90.0
    p.text((p.img.width / 2, y), inst, 40, bold=True, center=True)
    y += 70
    p.text((p.img.width / 2, y), "放射科影像诊断报告" if zh else "Radiology Report", 34, bold=True, center=True)
    y += 90
    size = 26
    name = spec.patient_name.replace("^", " ").title() if not zh else spec.patient_name
    p.text((MARGIN_X, y), (f"姓名：{name}    病人号：{spec.patient_id}" if zh else f"Patient: {name}    Patient ID: {spec.patient_id}"), size)
    y += 50
    if spec.link == "accession":
        p.text((MARGIN_X, y), (f"检查号：{spec.accession}" if zh else f"Accession No: {spec.accession}"), size)
    else:
        rno = f"R{spec.study_date:%y%m}-{int(rng.integers(1000, 9999))}"
        p.text((MARGIN_X, y), (f"报告编号：{rno}" if zh else f"Report No: {rno}"), size)
    y += 50
    exam = spec.exam_zh if zh else spec.exam_en[:1].upper() + spec.exam_en[1:]
    p.text((MARGIN_X, y), (f"检查项目：{exam}    检查日期：{spec.study_date:%Y年%m月%d日}" if zh else f"Exam: {exam}    Date: {spec.study_date:%Y-%m-%d}"), size)
    y += 50
    hist = _HISTORY[int(rng.integers(len(_HISTORY)))]
    p.text((MARGIN_X, y), (f"临床病史：{hist[1]}" if zh else f"Clinical history: {hist[0]}."), size)
    y += 70
    p.text((MARGIN_X, y), "影像所见：" if zh else "Findings:", size, bold=True)
    y += 48
    for sentence in spec.findings:
        y = p.paragraph(y, sentence, size, indent=0)
        y += 6
    y += 30
    p.text((MARGIN_X, y), "诊断意见：" if zh else "Impression:", size, bold=True)
    y += 48
    y = p.paragraph(y, spec.impression, size)
    y += 40
    p.text((MARGIN_X, y), ("报告医师：周明" if zh else "Radiologist: Dr. A. Morgan"), size)
    y += 80
    img = p.img.crop((0, 0, p.img.width, min(p.img.height, int(y))))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


# -- the corpus -----------------------------------------------------------------------------------
def _fill(template: str, slots: dict[str, Any]) -> str:
    return template.format(**slots)


def plan_studies(n: int, seed: int) -> list[StudySpec]:
    """The corpus' studies, each with a key finding no other study shares."""
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(seed)
    combos: list[tuple[int, str]] = []
    for i, ex in enumerate(_EXAMS):
        combos.extend((i, s) for s in (ex[2] or "-"))
    if not 0 < n <= len(combos):
        raise ValueError(f"n must be 1..{len(combos)} (one study per exam and side)")
    order = [combos[int(j)] for j in rng.permutation(len(combos))]
    specs: list[StudySpec] = []
    used_keys: set[str] = set()
    stations: set[str] = set()
    for k in range(n):
        ei, side = order[k]
        modality, part, _sides, view, exam_en, exam_zh, sd, series, fkey = _EXAMS[ei]
        side = "" if side == "-" else side
        s_en, s_zh, s_up = _SIDES.get(side, ("", "", ""))
        lang: Literal["zh", "en"] = "zh" if (k + k // 4) % 2 == 0 else "en"  # both languages for every link kind
        link: Link = ("accession", "stem", "accession", "case")[k % 4]  # type: ignore[assignment]
        for _attempt in range(1000):
            tpl_en, tpl_zh = _FINDINGS[fkey][int(rng.integers(len(_FINDINGS[fkey])))]
            fside = side or "LR"[int(rng.integers(2))]
            slots = {"size": int(rng.integers(3, 40)), "side": _SIDES[fside][0], "side_zh": _SIDES[fside][1],
                     "level": (lv := int(rng.integers(1, 5))), "level1": lv + 1,
                     "seg": ["II", "III", "IV", "V", "VI", "VII", "VIII"][int(rng.integers(7))]}
            key_en, key_zh = _fill(tpl_en, slots), _fill(tpl_zh, slots)
            if key_en not in used_keys:
                used_keys.add(key_en)
                break
        else:
            raise ValueError(f"no unique finding left for {fkey}")
        maker, model = _SCANNERS[modality][int(rng.integers(len(_SCANNERS[modality])))]
        while True:
            station = f"{_SITES[int(rng.integers(len(_SITES)))]}{modality}{int(rng.integers(1, 10))}"
            if station not in stations:
                stations.add(station)
                break
        inst_en, _ = _INSTITUTIONS[int(rng.integers(len(_INSTITUTIONS)))]
        d = date(2019, 1, 1) + timedelta(days=int(rng.integers(0, 5 * 365)))
        study_id = f"S{k + 1:03d}"
        normal_en, normal_zh = _NORMAL[fkey]
        key = key_zh if lang == "zh" else key_en[:1].upper() + key_en[1:] + "."
        findings = [key + ("。" if lang == "zh" and not key.endswith("。") else ""), normal_zh if lang == "zh" else normal_en]
        impression = (key_zh + "。") if lang == "zh" else key_en[:1].upper() + key_en[1:] + "."
        desc = sd.replace("{SIDE}", s_up)
        if lang == "zh":
            desc = exam_zh.replace("{side}", s_zh)  # Chinese hospitals write study descriptions in Chinese
        frames = 3 if (modality == "MR" and part == "BRAIN") else 1
        names = _ZH_NAMES if lang == "zh" else _EN_NAMES
        folder = {"accession": "images", "stem": "studies", "case": f"cases/{study_id}"}[link]
        dicom = f"{folder}/IM_{k + 1:04d}.dcm" if link == "accession" else f"{folder}/{study_id}.dcm"
        report = {"accession": f"reports/report_{k + 1:04d}.png", "stem": f"studies/{study_id}.report.png",
                  "case": f"cases/{study_id}/report.png"}[link]
        specs.append(StudySpec(
            study_id=study_id, lang=lang, link=link, modality=modality, body_part=part, laterality=side, view=view,
            exam_en=exam_en.replace("{side}", s_en), exam_zh=exam_zh.replace("{side}", s_zh),
            study_description=desc, series_description=series[int(rng.integers(len(series)))],
            manufacturer=maker, model=model, station=station, institution=inst_en, study_date=d,
            accession=f"ACC{d:%y%m%d}{int(rng.integers(100, 999))}",
            study_uid=str(generate_uid(entropy_srcs=[str(seed), study_id])),
            patient_name=names[int(rng.integers(len(names)))], patient_id=f"P{int(rng.integers(10**6, 10**7))}",
            frames=frames, transfer_syntax=_TS[k % len(_TS)] if modality != "US" else _TS[0],
            photometric="MONOCHROME1" if modality == "CR" else ("RGB" if modality == "US" else "MONOCHROME2"),
            dicom=dicom, report=report, findings=findings, key_finding=key_zh if lang == "zh" else key_en,
            impression=impression,
        ))
    return specs


def make_studies(out_dir: str | Path, n: int = 20, seed: int = 20240901, *, corpus: Path | None = None,
                 sidecar: Path | None = None) -> list[StudySpec]:
    """Write ``n`` studies under ``out_dir/corpus`` (or ``corpus``) and their ground truth to
    ``out_dir/meta/studies.jsonl`` (or ``sidecar``); paths in it are relative to the corpus folder."""
    out = Path(out_dir)
    corpus = corpus or out / "corpus"
    specs = plan_studies(n, seed)
    for i, spec in enumerate(specs):
        rng = np.random.default_rng([seed, i])
        write_dicom(spec, corpus / spec.dicom, rng, i)
        render_report(spec, corpus / spec.report, rng)
        if spec.link == "case":
            (corpus / spec.dicom).parent.joinpath(".imgrag-case").write_text(f"{spec.study_id}\n", encoding="utf-8")
    write_sidecar(sidecar or out / "meta" / SIDECAR, specs)
    return specs


def read_studies(path: str | Path) -> list[StudySpec]:
    return read_sidecar(path, StudySpec)


if __name__ == "__main__":  # python -m imgrag.evals.datasets.radiology OUT_DIR [N]
    import sys

    made = make_studies(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20)
    print(f"{len(made)} studies in {sys.argv[1]}")
