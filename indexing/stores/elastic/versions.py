"""The version log (``P-versions``) and rollback over multi-version rows."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from ...errors import ImgragError
from ..base import ModelSpaces, Version
from .client import PAGE, Connection, error_reason, guard
from .mapping import SPACE_DIM, VERSIONS_MAPPING
from .queries import bool_filter

log = logging.getLogger(__name__)


class Versions(Connection):
    """Versions are committed to the log; a rollback re-creates the rows that were live at a version."""

    def _ensure_versions_index(self) -> None:
        if self.es.indices.exists(index=self.versions_index):
            return
        from elasticsearch import BadRequestError

        settings: dict[str, Any] = {"number_of_shards": 1}
        if self.settings.es_replicas is not None:
            settings["number_of_replicas"] = self.settings.es_replicas
        try:
            self.es.indices.create(index=self.versions_index, settings={"index": settings}, mappings=VERSIONS_MAPPING)
        except BadRequestError as e:
            if "resource_already_exists" not in error_reason(e):
                raise

    def _next_version(self) -> int:
        if not self.es.indices.exists(index=self.versions_index):
            return 1
        res = self._complete(
            self.es.search, index=self.versions_index, size=0, aggs={"top": {"max": {"field": "version"}}}, request_cache=False
        ).body
        top = res["aggregations"]["top"]["value"]
        return int(top) + 1 if top is not None else 1

    def _log_entries(self) -> list[dict[str, Any]]:
        if not self.es.indices.exists(index=self.versions_index):
            return []
        out: list[dict[str, Any]] = []
        after: list[Any] | None = None
        while True:
            kw: dict[str, Any] = {"size": PAGE, "sort": [{"version": "asc"}], "query": {"match_all": {}}}
            if after is not None:
                kw["search_after"] = after
            hits = self._complete(self.es.search, index=self.versions_index, **kw).body["hits"]["hits"]
            out.extend(h["_source"] for h in hits)
            if len(hits) < PAGE:
                return out
            after = hits[-1]["sort"]

    @staticmethod
    def _as_version(entry: dict[str, Any]) -> Version:
        return Version(
            version=entry["version"], time=entry["time"], op=entry["op"],
            summary=entry.get("summary") or {}, spaces=entry.get("spaces"),
        )

    @guard("read the version log")
    def versions(self) -> list[Version]:
        return [self._as_version(e) for e in self._log_entries()]

    @guard("record a version")
    def commit(self, op: str, summary: dict[str, int | str]) -> Version:
        from elasticsearch import ConflictError

        with self._lock:
            info = self._generation()
            if info is None:
                raise ImgragError("nothing to commit: the index is empty", "index some images first")
            self._ensure_versions_index()
            number = self._next_version()
            version = Version(
                version=number, time=datetime.now(timezone.utc), op=op, summary=summary,
                spaces=ModelSpaces.model_validate(info[1]["spaces"]) if "spaces" in info[1] else None,
            )
            entry = {
                **version.model_dump(mode="json"),
                "generation": info[1].get("generation"),
                "index": info[0],
            }
            try:
                self.es.create(index=self.versions_index, id=str(number), document=entry, refresh=True)
            except ConflictError as e:
                raise ImgragError(
                    f"version {number} was recorded by another process at the same time",
                    "run one writer (index / delete / purge / rollback) at a time, then retry",
                ) from e
            self._dirty = False
            pages, self._bulk_pages = self._bulk_pages, 0
        if op not in ("interrupted", "recovered"):  # a stopped run is not kept waiting for a merge
            self._merge_after_bulk_load(info[0], pages)
        return version

    @contextmanager
    def writer(self) -> Iterator[None]:
        """No cross-process lock here (a cluster has many clients): a second writer's commit is
        refused if it would record the same version number. The block records what a stopped
        writer left (:meth:`recover`) and, if it raises, its own unrecorded changes."""
        outer = self._writer_depth == 0
        self._writer_depth += 1
        try:
            if outer:
                self.recover()
            yield
        finally:
            self._writer_depth -= 1
            if outer and self._dirty:
                self.commit("interrupted", {"reason": "the operation stopped before it recorded a version"})

    @guard("record an interrupted run")
    def recover(self) -> Version | None:
        """Rows a stopped writer wrote (or deleted) carry the next version number, not yet recorded."""
        with self._lock:
            info = self._generation()
            if info is None or self._dirty:  # our own changes are not a stopped writer's
                return None
            p = self._next_version()
            q = {"bool": {"should": [{"range": {"v_from": {"gte": p}}}, {"range": {"deleted_in": {"gte": p}}}],
                          "minimum_should_match": 1}}
            if not self._complete(self.es.count, index=info[0], query=q).body["count"]:
                return None
            if p == 1:  # the very first run stopped: version 0 is the empty index, so `rollback 0` undoes it
                self._ensure_versions_index()
                empty = Version(version=0, time=datetime.now(timezone.utc), op="empty",
                                spaces=ModelSpaces.model_validate(info[1]["spaces"]) if "spaces" in info[1] else None)
                self.es.create(
                    index=self.versions_index, id="0", refresh=True,
                    document={**empty.model_dump(mode="json"), "generation": info[1].get("generation"), "index": info[0]},
                )
            log.warning("recording changes of an imgrag process that stopped before it finished")
            return self.commit("recovered", {"reason": "a writer stopped before it recorded a version"})

    @guard("roll back")
    def rollback(self, version: int) -> Version:
        with self._lock:
            entries = {e["version"]: e for e in self._log_entries()}
            if version not in entries:
                known = ", ".join(str(v) for v in sorted(entries)) or "none"
                raise ImgragError(f"no version {version} (known: {known})", "see `imgrag versions`")
            target = entries[version]
            index = target["index"]
            if not self.es.indices.exists(index=index):
                raise ImgragError(
                    f"version {version} lives in index {index!r}, which no longer exists",
                    "roll back to a version of a generation that still exists (see `imgrag versions`)",
                )
            p = self._next_version()
            n = version
            actions: list[dict[str, Any]] = []
            revive: list[tuple[dict[str, Any], bool]] = []  # (row, deleted at n)
            # 1. rows written after n leave the live state
            for h in self._scan(bool_filter([{"term": {"current": True}}, {"range": {"v_from": {"gt": n}}}]), ["image_id", "v_from"], index=index):
                src = h["_source"]
                if src["v_from"] >= p:  # uncommitted: nobody can roll back to it, and its id is reused below
                    actions.append({"_op_type": "delete", "_index": index, "_id": h["_id"], "routing": src["image_id"]})
                else:
                    actions.append(
                        {"_op_type": "update", "_index": index, "_id": h["_id"], "routing": src["image_id"],
                         "doc": {"current": False, "v_to": p}}
                    )
            # 2. rows live at n but superseded since come back
            q2 = bool_filter([{"range": {"v_from": {"lte": n}}}, {"range": {"v_to": {"gt": n}}}])
            for h in self._scan(q2, ["image_id", "deleted_in"], index=index):
                d_in = h["_source"].get("deleted_in")
                revive.append((h, d_in is not None and d_in <= n))
            # 3. rows live at n and still current but soft-deleted since: un-delete as a new row
            q3 = bool_filter([
                {"term": {"current": True}}, {"range": {"v_from": {"lte": n}}},
                {"term": {"deleted": True}}, {"range": {"deleted_in": {"gt": n}}},
            ])
            for h in self._scan(q3, ["image_id"], index=index):
                src = h["_source"]
                actions.append(
                    {"_op_type": "update", "_index": index, "_id": h["_id"], "routing": src["image_id"],
                     "doc": {"current": False, "v_to": p}}
                )
                revive.append((h, False))
            full_source = {"includes": ["*"]}  # explicit includes: vectors come back too
            for i in range(0, len(revive), 200):
                chunk = revive[i : i + 200]
                found = {
                    d["_id"]: d["_source"]
                    for d in self._complete(
                        self.es.search, index=index, query={"ids": {"values": [h["_id"] for h, _ in chunk]}},
                        size=len(chunk), source=full_source,
                    ).body["hits"]["hits"]
                }
                for h, deleted in chunk:
                    src = found.get(h["_id"])
                    if src is None:
                        continue
                    if any(f not in src for f in SPACE_DIM):
                        raise ImgragError(
                            f"cannot restore {src.get('image_id')}: Elasticsearch returned its row without vectors",
                            "nothing was changed; report this with the Elasticsearch version",
                        )
                    src.update(current=True, v_from=p, deleted=deleted)
                    src.pop("v_to", None)
                    if not deleted:
                        src.pop("deleted_in", None)
                    actions.append(
                        {"_op_type": "index", "_index": index, "_id": f"{src['image_id']}@{p}",
                         "routing": src["image_id"], "_source": src}
                    )
            failures = self._bulk(actions, "rollback")
            self.es.indices.refresh(index=index)
            self._raise_failures(failures, len(actions), f"rollback to {version}")
            self._switch_alias(index)  # other models: make that generation live, atomically
            return self.commit(f"rollback to {version}", {"restored": version})
