"""One settings object for every entry point: ``IMGRAG_*`` environment variables over an optional
``imgrag.toml`` (``$IMGRAG_CONFIG``, else ``./imgrag.toml``, else ``$IMGRAG_HOME/imgrag.toml``)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, NoDecode, SettingsConfigDict, TomlConfigSettingsSource


def _toml_path() -> Path | None:
    explicit = os.environ.get("IMGRAG_CONFIG")
    if explicit:
        return Path(explicit)
    for candidate in (Path("imgrag.toml"), Path(os.environ.get("IMGRAG_HOME", "~/.imgrag")).expanduser() / "imgrag.toml"):
        if candidate.is_file():
            return candidate
    return None


class Settings(BaseSettings):
    """Every knob imgrag has; each one is documented in the README's settings table."""

    model_config = SettingsConfigDict(env_prefix="IMGRAG_", extra="ignore")

    home: Path = Field(default=Path("~/.imgrag"), description="where the index, caches and logs live")
    backend: Literal["lancedb", "elasticsearch"] = "lancedb"

    # LanceDB
    lance_ann_min_rows: int = Field(
        default=10_000, ge=0,
        description="build ANN (IVF_HNSW_SQ) indices on the page vectors once the index has this many pages; below, kNN scans exactly",
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
    es_num_candidates: int = Field(default=100, ge=1, le=10_000, description="kNN candidates per shard (at least 2 × k)")
    es_shards: int = Field(default=1, ge=1, description="primary shards of each new index generation")
    es_replicas: int | None = Field(default=None, ge=0, description="replicas of new indices; unset: the cluster default")
    es_request_timeout: float = Field(default=30.0, gt=0, description="seconds per Elasticsearch request")
    es_max_retries: int = Field(default=5, ge=0, description="retries with backoff on connection errors, 429 and 5xx")
    es_bulk_docs: int = Field(default=200, ge=1, le=10_000, description="pages per bulk request")
    es_region_hits: int = Field(default=3, ge=1, le=100, description="regions returned per image by region kNN")
    es_rescore_oversample: float = Field(
        default=2.0, ge=0, le=10, description="re-score quantized kNN candidates × this with the raw vectors; 0: off"
    )

    # models
    ocr_engine: Literal["rapidocr", "paddleocr"] = "rapidocr"
    paddle_model_dir: Path | None = None
    text_embedder: str = "e5"
    image_embedder: str = "bridge"
    adapter: Path | None = Field(default=None, description="folder of a trained alignment adapter (imgrag align)")
    clip_model: str | None = Field(default=None, description="CLIP model name or local folder for image_embedder=clip")

    # pipeline
    workers: int = Field(default=2, ge=1, le=64)
    batch_size: int = Field(default=8, ge=1, le=256)
    max_pixels: int = Field(default=80_000_000, description="larger images are refused as decompression bombs")
    max_file_mb: int = 512
    pdf_dpi: int = Field(default=150, ge=50, le=400)
    tables: bool = True

    # search
    rrf_k: int = 60
    # From `imgrag eval tune` over contracts + docqa + clipart (README "Evaluation"): mean nDCG@10
    # 0.581 / 0.601 (dev / test half) at the old 0.25 / 1 / 1 / 0.7 / 0.3 → 0.646 / 0.667 here.
    weight_image: float = 0.5
    weight_bm25: float = 3.0
    weight_text_vector: float = 0.5
    weight_region: float = 0.35
    region_rerank: float = 1.0
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
    max_k: int = 100

    # access control: the principal the CLI and the stdio MCP server act as
    principal: str | None = Field(default=None, description="unset: the local operator, who sees everything")
    groups: Annotated[list[str], NoDecode] = Field(default_factory=list, description="comma-separated")

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
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
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

    from .errors import ImgragError

    try:
        return Settings()
    except ValidationError as e:
        bad = "; ".join(f"IMGRAG_{str(err['loc'][0]).upper()}={err.get('input')!r}: {err['msg']}" for err in e.errors())
        raise ImgragError(f"invalid setting {bad}", "fix or unset it (environment or imgrag.toml; see README: Settings)") from e
