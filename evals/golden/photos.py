"""`photos`: the demo corpus's photos described as people ask for them, among its documents.

The seven scikit-image photos of ``make demo``'s corpus (`evals.datasets.demo`: an astronaut, a
cameraman, a cat, a coffee cup, the moon and coins in one two-frame TIFF, a motorcycle, a rocket)
sit among contracts, Debian manual pages, X-ray reports and SOPs in two languages. Each photo is
described twice in English and twice in Chinese, written by looking at the photos (session 18),
each language on its own, after the search had been tuned elsewhere (`pictures-dev`, `visual`
dev): a check of what a user of the demo gets when they ask for a picture by what it shows, not a
set to tune on. Relevance is by file (the TIFF's two frames are one file).

    python -m imgrag.evals.golden.photos OUT.jsonl
    IMGRAG_HOME=~/.imgrag-demo imgrag eval retrieval --set OUT.jsonl --folder ~/.cache/imgrag/demo-corpus/corpus
"""

from __future__ import annotations

import sys

from . import GoldenItem, write_golden

NAME = "photos"
# file -> (English, Chinese) descriptions
QUERIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "astronaut.jpg": (("woman astronaut in an orange spacesuit", "astronaut holding her helmet"),
                      ("穿橙色航天服的女宇航员", "抱着头盔的宇航员")),
    "camera.bmp": (("man filming with a camera on a tripod", "black and white photo of a cameraman"),
                   ("用三脚架上的摄像机拍摄的男人", "黑白照片里的摄影师")),
    "chelsea.png": (("close-up of a tabby cat's face", "cat with green eyes"), ("虎斑猫的脸部特写", "绿眼睛的猫")),
    "coffee.jpg": (("espresso in a red cup on a saucer", "coffee cup with a spoon"), ("红色杯子里的浓缩咖啡", "带勺子的咖啡杯")),
    "moon_coins.tif": (("craters on the lunar surface", "old coins laid out in rows"), ("月球表面的陨石坑", "一排排的古钱币")),
    "motorcycle.webp": (("red motorbike parked in a garage", "a motorcycle"), ("停在车库里的红色摩托车", "一辆摩托车")),
    "rocket_exif6.jpg": (("rocket on the launch pad at night", "space launch tower"), ("夜晚发射台上的火箭", "航天发射塔")),
}  # fmt: skip


def golden() -> list[GoldenItem]:
    items = []
    for file, (en, zh) in QUERIES.items():
        stem = file.rsplit(".", 1)[0]
        for lang, phrasings in (("en", en), ("zh", zh)):
            for i, q in enumerate(phrasings):
                items.append(GoldenItem(id=f"{NAME}/{stem}/{lang}/{i}", query=q, relevant=[file], lang=lang, kind="photo"))
    return items


if __name__ == "__main__":  # pragma: no cover - a build script
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m imgrag.evals.golden.photos OUT.jsonl")
    its = golden()
    print(f"{len(its)} items → {write_golden(sys.argv[1], its)}")
