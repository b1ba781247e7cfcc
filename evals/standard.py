"""The standard golden sets, built once and cached with their index.

Each set lives in ``~/.cache/imgrag/eval/<set>-<recipe hash>/`` (``$IMGRAG_EVAL_CACHE`` overrides the
parent): ``corpus/`` (the files to index), ``meta/`` (the generators' ground truth), ``golden.jsonl``
and ``built.json``. The hash covers the recipe *and* the source of the builders, so a change to a
generator rebuilds instead of silently reusing stale pages. Builds go to a temporary folder renamed
into place at the end, so an interrupted build is never mistaken for a finished one.

The index sits beside the corpus, one per backend and model configuration: ``index-<key>/`` is an
``IMGRAG_HOME`` for LanceDB; for Elasticsearch the key becomes the index prefix. Indexing is
incremental (the indexer skips unchanged files), and a stamp records that a run finished, so a
re-run of ``imgrag eval`` starts searching at once. When the models' identities changed the index is
rebuilt; ``IMGRAG_EVAL_REUSE_INDEX=1`` searches the old one instead (while models are being worked
on), and the result records the mismatch.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from imgrag.indexing.config import Settings
from imgrag.indexing.errors import ImgragError

from .golden import GoldenItem, read_golden, write_golden

RECIPE_VERSION = "eval-v1"


class StandardSet(BaseModel):
    name: str
    description: str
    corpus_modules: list[str]  # modules that make the corpus: their source is part of the corpus hash
    golden_module: str  # makes golden.jsonl from the corpus' sidecars; a change only rewrites the golden file
    recipe: dict[str, Any]
    golden_only: list[str] = []  # recipe fields that change the queries, not the corpus
    recipe_cls: str  # the recipe model in golden_module
    build_fn: str = "build_corpus"  # golden_module's (out_dir, recipe) -> None that writes corpus/ and meta/
    golden_fn: str = "golden"  # golden_module's (out_dir, recipe) -> list[GoldenItem]
    links: bool = False  # a joint-retrieval set: also scored with links not followed


def _registry() -> dict[str, StandardSet]:
    from .golden import cases, clipart, contracts, docqa

    return {
        "contracts": StandardSet(
            name="contracts", description="generated contract pages (zh + en, scanned variants) with QA and seal boxes",
            corpus_modules=["imgrag.evals.datasets.contracts", "imgrag.evals.datasets.fonts"], golden_module="imgrag.evals.golden.contracts",
            recipe=contracts.ContractsRecipe().model_dump(), recipe_cls="ContractsRecipe"),
        "docqa": StandardSet(
            name="docqa", description="Debian Reference pages (en + zh) with questions printed on the page",
            corpus_modules=["imgrag.evals.datasets.docpages"], golden_module="imgrag.evals.golden.docqa",
            recipe=docqa.DocqaRecipe().model_dump(), golden_only=["keyword_queries_per_page"], recipe_cls="DocqaRecipe"),
        "clipart": StandardSet(
            name="clipart", description="openclipart titles and keywords → images, held-out split",
            corpus_modules=["imgrag.evals.splits"], golden_module="imgrag.evals.golden.clipart",
            recipe=clipart.ClipartRecipe().model_dump(), golden_only=["keyword_queries"], recipe_cls="ClipartRecipe"),
        "xray_reports": StandardSet(
            name="xray_reports", description="DICOM studies (CR/DX/CT/MR/US/MG phantoms with real tags) and their reports, zh + en, linked",
            corpus_modules=["imgrag.evals.datasets.radiology", "imgrag.evals.datasets.contracts", "imgrag.evals.datasets.fonts"],
            golden_module="imgrag.evals.golden.cases", recipe=cases.XrayRecipe().model_dump(), recipe_cls="XrayRecipe",
            build_fn="build_xray", golden_fn="xray_golden", links=True),
        "defect_sops": StandardSet(
            name="defect_sops", description="generated defect photos and the SOP pages of their parts, zh + en, linked",
            corpus_modules=["imgrag.evals.datasets.defects", "imgrag.evals.datasets.contracts", "imgrag.evals.datasets.fonts"],
            golden_module="imgrag.evals.golden.cases", recipe=cases.DefectRecipe().model_dump(), recipe_cls="DefectRecipe",
            build_fn="build_defects", golden_fn="defect_golden", links=True),
    }


STANDARD_SETS: tuple[str, ...] = ("contracts", "docqa", "clipart")
# Hand-written sets over a standard set's corpus, each split once into a half to tune on and a
# held-out half; not part of `imgrag eval all`: name -> (corpus set, golden module, half). Questions
# over the docqa pages (evals.golden.natural), descriptions of the clipart pictures (evals.golden.pictures).
HANDWRITTEN_SETS: dict[str, tuple[str, str, str]] = {
    "natural-dev": ("docqa", "natural", "dev"), "natural-heldout": ("docqa", "natural", "heldout"),
    "pictures-dev": ("clipart", "pictures", "dev"), "pictures-heldout": ("clipart", "pictures", "heldout"),
}
# Joint retrieval (an image and the document that explains it, linked); not part of `imgrag eval all`.
CASE_SETS: tuple[str, ...] = ("xray_reports", "defect_sops")
ALL_SETS: tuple[str, ...] = (*STANDARD_SETS, *HANDWRITTEN_SETS, *CASE_SETS)


def cache_root() -> Path:
    # empty (an env file's `IMGRAG_EVAL_CACHE=`) is unset, like IMGRAG_HOME: it was Path('.'), so
    # `imgrag eval` built its corpora and indexes in whatever folder it ran in
    return Path(os.environ.get("IMGRAG_EVAL_CACHE", "").strip() or "~/.cache/imgrag/eval").expanduser()


def _source(mod: str) -> str:
    import importlib

    return inspect.getsource(importlib.import_module(mod))


def _sha(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def recipe_hash(spec: StandardSet) -> str:
    """Hash of what the corpus depends on: recipe (less query-only fields) and generator source.
    The clipart corpus is chosen by the golden module's ``collect``, so its source counts there."""
    corpus_recipe = {k: v for k, v in spec.recipe.items() if k not in spec.golden_only}
    mods = list(spec.corpus_modules)
    if spec.name == "clipart":
        from .golden import clipart

        mods_src = [inspect.getsource(f) for f in (clipart.collect, clipart.flatten, clipart.good_title, clipart.svg_metadata)]
    else:
        mods_src = []
    return _sha(RECIPE_VERSION, json.dumps(corpus_recipe, sort_keys=True), *[_source(m) for m in mods], *mods_src)


def golden_hash(spec: StandardSet) -> str:
    return _sha(json.dumps(spec.recipe, sort_keys=True), _source(spec.golden_module), _source("imgrag.evals.golden"))


class PreparedSet(BaseModel):
    """A built standard set (or a user's golden file) and where its corpus is."""

    name: str
    root: Path | None = None  # the cache folder of a standard set
    corpus: Path | None = None  # folder the golden file names refer to; None: match by file name anywhere
    golden: Path
    built_seconds: float = 0.0
    reused: bool = False
    links: bool = False  # a joint-retrieval set: score it without links too

    def items(self) -> list[GoldenItem]:
        return read_golden(self.golden)


def _golden_builder(spec: StandardSet) -> Callable[[Path], list[GoldenItem]]:
    import importlib

    mod = importlib.import_module(spec.golden_module)
    recipe = getattr(mod, spec.recipe_cls).model_validate(spec.recipe)
    return lambda out: getattr(mod, spec.golden_fn)(out, recipe)


def build_standard(name: str, *, log: Callable[[str], None] = print) -> PreparedSet:
    """Build (or reuse) a standard set's corpus, and (re)write its golden file when the query
    builder changed."""
    import importlib

    if name in HANDWRITTEN_SETS:
        base_name, module, half = HANDWRITTEN_SETS[name]
        base = build_standard(base_name, log=log)
        assert base.root is not None
        gpath = base.root / f"golden-{name}.jsonl"
        write_golden(gpath, importlib.import_module(f"imgrag.evals.golden.{module}").golden(base.root, split=half))
        return base.model_copy(update={"name": name, "golden": gpath})
    reg = _registry()
    if name not in reg:
        raise ImgragError(f"unknown golden set {name!r}", f"use one of {', '.join(ALL_SETS)} or a path to a JSONL file")
    spec = reg[name]
    root = cache_root() / f"{name}-{recipe_hash(spec)}"
    stamp = root / "built.json"
    reused = stamp.is_file()
    seconds = 0.0
    if not reused:
        log(f"building corpus {name} into {root} …")
        t0 = time.perf_counter()
        tmp = root.with_name(root.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            mod = importlib.import_module(spec.golden_module)
            getattr(mod, spec.build_fn)(tmp, getattr(mod, spec.recipe_cls).model_validate(spec.recipe))
            seconds = round(time.perf_counter() - t0, 1)
            files = sorted(p.name for p in (tmp / "corpus").iterdir())
            (tmp / "built.json").write_text(json.dumps({"set": spec.model_dump(), "hash": recipe_hash(spec),
                                                         "seconds": seconds, "files": len(files)}, indent=2))
            shutil.rmtree(root, ignore_errors=True)
            tmp.rename(root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"built {name}: {len(files)} files in {seconds:.0f}s")
    else:
        seconds = json.loads(stamp.read_text()).get("seconds", 0.0)
    gpath, gstamp = root / "golden.jsonl", root / "golden.hash"
    gh = golden_hash(spec)
    if not gpath.is_file() or not gstamp.is_file() or gstamp.read_text().strip() != gh:
        items = _golden_builder(spec)(root)
        write_golden(gpath, items)
        gstamp.write_text(gh)
    return PreparedSet(name=name, root=root, corpus=root / "corpus", golden=gpath, built_seconds=seconds, reused=reused,
                       links=spec.links)


# Settings that change what is stored in an index; the index key hashes them. Not backbone_runtime:
# ONNX Runtime and torch give the same vectors and captions (docs/performance.md).
INDEX_KEYS = (
    "backend", "ocr_engine", "paddle_model_dir", "text_embedder", "image_embedder", "adapter", "clip_model", "pdf_dpi", "tables",
    "visual_marks", "page_text_tokens", "region_text_tokens", "photo_text_gate", "tile_side", "photo_one_pass",
)  # fmt: skip


# Settings that change the index only when set away from their default: keyed then, so the key of
# every index built before they existed stays what it was.
INDEX_KEYS_IF_SET: dict[str, object] = {"image_backbone": "lite0", "image_framing": "centre",
                                        "transfer_memory": None, "ocr_int8": False}  # the memory also chooses transfer's framing


# Settings naming a file (or folder) whose *content* makes the index: keyed by what the files hold,
# so a memory or adapter rebuilt in place gets its own index, and ./m.npz and /abs/m.npz share one.
KEYED_BY_CONTENT: dict[str, tuple[str, ...]] = {"transfer_memory": ("", ".json"),  # the .npz and its .json
                                                "adapter": ("adapter.safetensors", "adapter.json")}


def _content(path: object, parts: tuple[str, ...]) -> str:
    """``sha256:<hex>`` of the named files' bytes; the path as given when they cannot be read (the
    run then stops on the setting with its own one-line error)."""
    p = Path(str(path)).expanduser()
    h = hashlib.sha256()
    try:
        for part in parts:
            f = p / part if part and not part.startswith(".") else (p.with_suffix(part) if part else p)
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    except OSError:
        return str(path)
    return "sha256:" + h.hexdigest()[:16]


def index_key(settings: Settings, *, by_path: bool = False) -> str:
    """The eval index's key: a hash of the settings that change what is stored. ``by_path``: the
    key sessions before 12 used (file-valued settings by their path), to find their indexes."""
    def value(k: str) -> str:
        v = getattr(settings, k)
        return _content(v, KEYED_BY_CONTENT[k]) if k in KEYED_BY_CONTENT and v is not None and not by_path else str(v)

    data = {k: value(k) for k in INDEX_KEYS}
    data |= {k: value(k) for k, default in INDEX_KEYS_IF_SET.items() if getattr(settings, k) != default}
    if settings.backend == "elasticsearch":
        data["es_url"] = settings.es_url
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


def eval_settings(base: Settings, prepared: PreparedSet) -> Settings:
    """Settings for searching a standard set: its own index home (LanceDB) or index prefix
    (Elasticsearch), everything else (weights, models, ES connection) as the user configured."""
    if prepared.root is None:
        return base
    key = index_key(base)
    home = prepared.root / f"index-{key}"
    legacy = prepared.root / f"index-{index_key(base, by_path=True)}"
    if base.backend == "lancedb" and legacy != home and legacy.is_dir() and not home.exists():
        # an index keyed by the file's path (before session 12): reused once under the content key;
        # if the file changed since it was built, ensure_indexed sees other model spaces and rebuilds
        legacy.rename(home)
    upd: dict[str, Any] = {"home": home}
    if base.backend == "elasticsearch":
        # the root's name ("docqa-<hash>"): sets that share a corpus (natural-*) share its index
        upd["es_index_prefix"] = f"{base.es_index_prefix}-eval-{prepared.root.name}-{key}"
    s = base.model_copy(update=upd)
    # Share the label-vector cache between sets: it is keyed by model identity inside the folder.
    shared = cache_root() / "model-cache"
    shared.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    link = home / "cache"
    if not link.exists() and not link.is_symlink():
        link.symlink_to(shared, target_is_directory=True)
    return s


def ensure_indexed(prepared: PreparedSet, app: Any, *, log: Callable[[str], None] = print,
                   progress: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Index the set's corpus with ``app`` (the facade) unless a finished run with the same files and model spaces
    is recorded. Returns the stamp (files, seconds, version)."""
    from imgrag.indexing.stores.base import OPERATOR, Filters

    assert prepared.corpus is not None
    s = app.settings
    stamp_path = s.home / f"indexed-{s.backend}.json"
    files = sorted(p.relative_to(prepared.corpus).as_posix() for p in prepared.corpus.rglob("*") if p.is_file())
    spaces = app.rt.spaces().model_dump()
    reuse_any = os.environ.get("IMGRAG_EVAL_REUSE_INDEX", "").strip().lower() in ("1", "true", "yes")
    if stamp_path.is_file():
        stamp = json.loads(stamp_path.read_text())
        same_models = stamp.get("spaces") == spaces
        if stamp.get("files") == files and (same_models or reuse_any) and stamp.get("prefix") == s.es_index_prefix:
            try:
                n = app.store.count(OPERATOR, Filters())
            except ImgragError:
                n = -1
            if n == stamp.get("pages"):
                if not same_models:
                    log(f"IMGRAG_EVAL_REUSE_INDEX: searching {prepared.name}'s index built with other model identities "
                        f"({stamp.get('spaces')}); numbers are not those of the current models")
                return {**stamp, "reused": True, "spaces_mismatch": not same_models, "current_spaces": spaces}
    stored = app.store.spaces()
    if stored is not None and stored.model_dump() != spaces:
        if s.backend != "lancedb":
            raise ImgragError(f"the eval index {s.es_index_prefix} was built with other models",
                              "delete its indices or change IMGRAG_ES_INDEX_PREFIX")
        log(f"models changed since {s.index_dir} was built: rebuilding it")
        app.close()
        shutil.rmtree(s.index_dir, ignore_errors=True)
    log(f"indexing {prepared.name}: {len(files)} files into {s.backend} ({s.index_dir if s.backend == 'lancedb' else s.es_index_prefix}) …")
    t0 = time.perf_counter()
    summary = app.index([str(prepared.corpus)], progress=progress)
    seconds = round(time.perf_counter() - t0, 1)
    if summary.failed:
        log(f"{len(summary.failed)} file(s) failed to index: " + "; ".join(f"{f.path}: {f.reason}" for f in summary.failed[:3]))
    pages = app.store.count(OPERATOR, Filters())
    stamp = {"files": files, "spaces": spaces, "prefix": s.es_index_prefix, "pages": pages, "seconds": seconds,
             "indexed": summary.indexed, "failed": len(summary.failed)}
    stamp_path.write_text(json.dumps(stamp))
    log(f"indexed {prepared.name}: {summary.indexed} new page(s), {pages} in the index, {seconds:.0f}s")
    return {**stamp, "reused": False}
