"""Generation indices (one per set of embedding models) and the alias that makes one live."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from ...errors import ImgragError
from ..base import ModelSpaces, Version, check_same_spaces
from . import mapping
from .client import Connection, audit_index_name, guard
from .mapping import SCHEMA, index_mappings

log = logging.getLogger(__name__)
_LIVE_TTL = 2.0  # seconds a read trusts its cached view of the live generation


class Generations(Connection):
    """The live generation behind the alias: found, cached briefly, created, switched and dropped."""

    @guard("inspect the index alias")
    def _check_alias(self) -> None:
        """An existing prefix must be ours: an alias over a generation built by this schema."""
        info = self._generation()
        if info is None:
            if self.es.indices.exists(index=self.alias):
                raise ImgragError(
                    f"an index named {self.alias!r} exists at {self.url} but is not an imgrag alias",
                    "set IMGRAG_ES_INDEX_PREFIX to another name",
                )
            return
        schema = info[1].get("schema")
        if schema != SCHEMA:
            raise ImgragError(
                f"the index {info[0]!r} behind {self.alias!r} was not built by this imgrag (schema {schema!r}, need {SCHEMA})",
                "set IMGRAG_ES_INDEX_PREFIX to another name, or re-index into a new prefix",
            )

    def _gen_name(self, n: int) -> str:
        return f"{self.alias}-g{n:06d}"

    def _generation(self) -> tuple[str, dict[str, Any]] | None:
        """(index, imgrag _meta) of the live generation, or None before the first write. One
        request: the alias's mapping comes back keyed by the index behind it (alias, then mapping,
        was two round trips, and every search after a pause paid them)."""
        from elasticsearch import NotFoundError

        try:
            mapping = self.es.indices.get_mapping(index=self.alias)
        except NotFoundError:
            return None
        names = sorted(mapping.body)
        if names == [self.alias]:
            return None  # an index of that name, not an alias (``_check_alias`` says so)
        if len(names) != 1:
            raise ImgragError(
                f"the alias {self.alias!r} points at {len(names)} indices ({', '.join(names)})",
                "imgrag keeps exactly one generation live: fix the alias or use another IMGRAG_ES_INDEX_PREFIX",
            )
        meta = (mapping.body[names[0]]["mappings"].get("_meta") or {}).get("imgrag") or {}
        return names[0], meta

    def _live(self) -> tuple[str, dict[str, Any]] | None:
        """:meth:`_generation` cached for a moment: reads go through the alias anyway, so a stale
        entry only delays noticing another process's model switch by ``_LIVE_TTL`` seconds. Once
        it is stale, one thread reads it again and the search's other threads wait for that read
        (they each sent their own before)."""
        cached = self._live_cache
        if cached is not None and cached[1] is not None and time.monotonic() - cached[0] < _LIVE_TTL:
            return cached[1]
        with self._live_lock:
            cached = self._live_cache
            if cached is not None and cached[1] is not None and time.monotonic() - cached[0] < _LIVE_TTL:
                return cached[1]  # another thread read it while this one waited
            info = self._generation()
            self._live_cache = (time.monotonic(), info)
            return info

    def _require_generation(self) -> tuple[str, dict[str, Any]]:
        info = self._generation()
        if info is None:
            raise ImgragError("the index has no tables yet", "call ensure_spaces before writing")
        return info

    def _existing_generations(self) -> list[int]:
        res = self.es.indices.get(index=f"{self.alias}-g*", allow_no_indices=True, ignore_unavailable=True)
        gens = []
        for name in res.body:
            m = re.fullmatch(re.escape(self.alias) + r"-g(\d+)", name)
            if m:
                gens.append(int(m.group(1)))
        return sorted(gens)

    def _create_generation(self, spaces: ModelSpaces) -> tuple[str, int]:
        existing = self._existing_generations()
        n = (existing[-1] + 1) if existing else 1
        name = self._gen_name(n)
        index_settings: dict[str, Any] = {"number_of_shards": self.settings.es_shards}
        if self.settings.es_replicas is not None:
            index_settings["number_of_replicas"] = self.settings.es_replicas
        self.es.indices.create(index=name, mappings=index_mappings(self.settings, spaces, n), settings={"index": index_settings})
        return name, n

    def _switch_alias(self, index: str) -> None:
        info = self._generation()
        actions: list[dict[str, Any]] = []
        if info is not None:
            if info[0] == index:
                return
            actions.append({"remove": {"index": info[0], "alias": self.alias}})
        actions.append({"add": {"index": index, "alias": self.alias}})
        self._live_cache = None
        self.es.indices.update_aliases(actions=actions)

    @guard("read the index's models")
    def spaces(self) -> ModelSpaces | None:
        """The live generation's models, as reads see them (:meth:`_live`: at most ``_LIVE_TTL``
        seconds behind another process's switch; this process's own switch clears it)."""
        return self._spaces_of(self._live())

    @staticmethod
    def _spaces_of(info: tuple[str, dict[str, Any]] | None) -> ModelSpaces | None:
        if info is None or "spaces" not in info[1]:
            return None
        return ModelSpaces.model_validate(info[1]["spaces"])

    @guard("create the index")
    def ensure_spaces(self, spaces: ModelSpaces) -> None:
        with self._lock:
            current = self._spaces_of(self._generation())  # fresh: this decides what to create
            if current is not None:
                check_same_spaces(current, spaces, "IMGRAG_ES_INDEX_PREFIX")
                self._upgrade_mapping()
                return
            self._ensure_versions_index()
            name, _ = self._create_generation(spaces)
            self._switch_alias(name)

    def _upgrade_mapping(self) -> None:
        """Add :data:`mapping.ADDED_FIELDS` to a live generation created by an older imgrag (strict
        mappings refuse unknown fields, so its next write would fail)."""
        index, _ = self._require_generation()
        props = self.es.indices.get_mapping(index=index).body[index]["mappings"].get("properties", {})
        blocks = props.get("blocks", {}).get("properties", {})
        if all(f in props for f in mapping.ADDED_FIELDS) and all(f in blocks for f in mapping.ADDED_BLOCK_FIELDS):
            return
        self.es.indices.put_mapping(
            index=index,
            properties={**mapping.ADDED_FIELDS, "blocks": {"type": "nested", "properties": mapping.ADDED_BLOCK_FIELDS}},
        )
        log.info("added the PII fields to %s", index)

    @guard("start a new index generation")
    def start_generation(self, spaces: ModelSpaces) -> Version:
        """Build a new, empty generation for other embedding models and make it live.

        Re-index everything into it afterwards; ``rollback`` to a version of the previous
        generation switches the alias back (the old generation is kept untouched).
        """
        with self._lock:
            self._ensure_versions_index()
            name, n = self._create_generation(spaces)
            self._switch_alias(name)
            return self.commit(f"new generation {n}", {"generation": n})

    @guard("delete the indices")
    def drop(self) -> None:
        """Delete every index and the alias of this prefix, the audit log included (irreversible)."""
        names = [self._gen_name(n) for n in self._existing_generations()]
        for name in (self.versions_index, audit_index_name(self.alias)):
            if self.es.indices.exists(index=name):
                names.append(name)
        for name in names:
            self.es.indices.delete(index=name, ignore_unavailable=True)
