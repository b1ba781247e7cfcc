"""The public class: the store's parts (generations, versions, writes, reads) over one connection."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ...errors import ImgragError
from .client import check_index_name, translate
from .generations import Generations
from .reads import Reads
from .versions import Versions
from .writes import Writes

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from ...config import Settings

class ElasticStore(Reads, Writes, Versions, Generations):
    """:class:`~indexing.stores.base.IndexStore` on Elasticsearch 9.x; one writer process at a time."""

    backend = "elasticsearch"

    def __init__(self, settings: Settings, client: Elasticsearch | None = None) -> None:
        self.settings = settings
        self.url = settings.es_url
        prefix = settings.es_index_prefix
        check_index_name(prefix)
        self.alias = prefix
        self.versions_index = f"{prefix}-versions"
        self._lock = threading.RLock()
        self._dirty = False  # this object changed rows that no version records yet
        self._writer_depth = 0
        self._bulk_pages = 0
        self._live_cache: tuple[float, tuple[str, dict[str, Any]] | None] | None = None
        self._live_lock = threading.Lock()  # one refresh of _live_cache at a time
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
