"""The public class: the store's parts (generations, versions, writes, reads) over one connection."""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

from ...errors import ImgragError
from .client import translate
from .generations import Generations
from .reads import Reads
from .versions import Versions
from .writes import Writes

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from ...config import Settings

_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,180}$")


class ElasticStore(Reads, Writes, Versions, Generations):
    """:class:`~indexing.stores.base.IndexStore` on Elasticsearch 9.x; one writer process at a time."""

    backend = "elasticsearch"

    def __init__(self, settings: Settings, client: Elasticsearch | None = None) -> None:
        self.settings = settings
        self.url = settings.es_url
        prefix = settings.es_index_prefix
        if not _INDEX_NAME.match(prefix):
            raise ImgragError(
                f"IMGRAG_ES_INDEX_PREFIX={prefix!r} is not a valid index name",
                "use lower-case letters, digits, '.', '_' or '-', starting with a letter or digit",
            )
        self.alias = prefix
        self.versions_index = f"{prefix}-versions"
        self._lock = threading.RLock()
        self._live_cache: tuple[float, tuple[str, dict[str, Any]] | None] | None = None
        self.es = client if client is not None else self._connect()
        self.server_version = self._check_server()
        self._check_alias()


def open_elastic(settings: Settings) -> ElasticStore:
    try:
        return ElasticStore(settings)
    except ImgragError:
        raise
    except Exception as e:
        raise translate(e, settings.es_url, "connect") from e
