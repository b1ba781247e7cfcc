"""Writes: bulk requests with retries and per-page failures, pages, metadata updates, soft deletes,
purges and re-embedding into a new generation."""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np

from ...errors import ImgragError
from ..base import (
    ImageRecord,
    ImageSpaceFn,
    ImageSpaceReplaced,
    Indexed,
    MetadataUpdate,
    ModelSpaces,
    check_same_base_spaces,
    fts_source,
    meta_kv,
)
from .client import READ_ONLY_HINT, BulkWriteError, Connection, error_reason, guard, log
from .mapping import SPACE_DIM, row_document, source_vec, vec_b64, vec_list
from .queries import bool_filter, dedup, hit_image_id

_MAX_SEGMENT_BYTES = 5 * 1024**3  # index.merge.policy.max_merged_segment's default
_MERGE_POLL_S = 2.0
_EXPUNGE_RETRY_S = 5.0  # until the retention lease has moved past the purge (~30 s)


class Writes(Connection):
    """Every write supersedes current rows and adds new ones at the next version, in bulk."""

    def _bulk(self, actions: list[dict[str, Any]], what: str) -> dict[str, str]:
        """Send actions in order, retrying 429/5xx with backoff; return ``image id → reason`` failures."""
        from elasticsearch import helpers

        if not actions:
            return {}
        failures: dict[str, str] = {}
        s = self.settings
        for ok, info in helpers.streaming_bulk(
            self.es,
            actions,
            chunk_size=s.es_bulk_docs,
            max_chunk_bytes=50 * 1024 * 1024,
            raise_on_error=False,
            raise_on_exception=True,
            max_retries=s.es_max_retries,
            initial_backoff=0.5,
            max_backoff=30,
            retry_on_status=(429, 500, 502, 503, 504),
            yield_ok=False,
        ):
            if ok:
                continue
            op, detail = next(iter(info.items()))
            status = detail.get("status")
            if op == "delete" and status == 404:
                continue
            err = detail.get("error")
            reason = (
                f"{err.get('type')}: {err.get('reason')}" if isinstance(err, dict) else str(err or detail.get("result"))
            )
            doc_id = str(detail.get("_id", "?")).rsplit("@", 1)[0]
            failures[doc_id] = f"{op} failed ({status}): {reason}"
        if failures:
            log.info("%s: %d document(s) failed: %s", what, len(failures), failures)  # raised by _raise_failures
        return failures

    def _merge_after_bulk_load(self, index: str, pages: int) -> None:
        """Force-merge ``index`` to ``es_merge_segments`` segments a shard after a write operation
        that wrote at least ``es_merge_min_pages`` pages, and wait for it up to ``es_merge_wait_s``
        (the server finishes it alone after that). A bulk load leaves
        hundreds of small segments that the server merges slowly, and every kNN walks every
        segment's graph: at 100k pages 131 -> 4 segments took the region routes from ~100 to ~33 ms
        (docs/performance.md). Searches run meanwhile and return the same pages; a merge that
        fails or is refused only leaves more segments, so it is logged, never raised."""
        s = self.settings
        if not s.es_merge_segments or pages < s.es_merge_min_pages:
            return
        try:
            prim = self.es.indices.stats(index=index, metric="segments,store")["indices"][index]["primaries"]
            shards = int(self.es.indices.get_settings(index=index)[index]["settings"]["index"]["number_of_shards"])
            segments = int(prim["segments"]["count"])
            # Lucene's merges stop at 5 GiB a segment; a bigger one is left out of later merges
            per_shard = max(s.es_merge_segments, math.ceil(int(prim["store"]["size_in_bytes"]) / shards / _MAX_SEGMENT_BYTES))
            if segments <= per_shard * shards:
                return
            log.info("merging %s from %d to %d segment(s) a shard after writing %d pages (Elasticsearch "
                     "searches meanwhile; IMGRAG_ES_MERGE_SEGMENTS=0 skips this)", index, segments, per_shard, pages)
            t0 = time.monotonic()
            task = self.es.indices.forcemerge(index=index, max_num_segments=per_shard, wait_for_completion=False)["task"]
            deadline = t0 + s.es_merge_wait_s
            while not (done := self._task(task))["completed"]:
                if time.monotonic() >= deadline:  # bounded: a write never waits on the server for ever
                    log.info("%s is still merging after %.0f s (IMGRAG_ES_MERGE_WAIT_S); Elasticsearch finishes "
                             "it on its own, searches stay correct meanwhile (task %s)", index, time.monotonic() - t0, task)
                    return
                time.sleep(min(_MERGE_POLL_S, max(0.0, deadline - time.monotonic())))
            if done.get("error"):
                log.warning("force-merging %s failed (%s): searches stay correct, on more segments", index, done["error"])
            else:
                log.info("merged %s in %.0f s", index, time.monotonic() - t0)
        except Exception as e:  # the data is written and versioned; only the search speed is at stake
            log.warning("could not force-merge %s (%s): searches stay correct, on more segments", index, error_reason(e))

    def _task(self, task: str) -> dict[str, Any]:
        from elasticsearch.exceptions import GeneralAvailabilityWarning

        with warnings.catch_warnings():  # the tasks API is a "technical preview" since 8.x, and what force-merge returns
            warnings.simplefilter("ignore", GeneralAvailabilityWarning)
            return self.es.tasks.get(task_id=task).body  # type: ignore[no-any-return]

    def _raise_failures(self, failures: dict[str, str], total: int, what: str) -> None:
        if not failures:
            return
        shown = "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        mapping = any("mapper_parsing" in v or "strict_dynamic" in v or "illegal_argument" in v for v in failures.values())
        blocked = any("cluster_block_exception" in v for v in failures.values())
        raise BulkWriteError(
            f"{what}: {len(failures)} of {total} page(s) were rejected by Elasticsearch: {shown}{more}",
            "the index is read-only: " + READ_ONLY_HINT
            if blocked
            else "the index mapping conflicts with these records: use a new IMGRAG_ES_INDEX_PREFIX"
            if mapping
            else "the other pages were written; retry the failed ones (imgrag index skips what is already indexed)",
            failures,
        )

    def _current_rows(self, image_ids: list[str], extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i in range(0, len(image_ids), 1000):
            chunk = image_ids[i : i + 1000]
            q = bool_filter([{"term": {"current": True}}, {"terms": {"image_id": chunk}}, *(extra or [])])
            out.extend(self._scan(q, ["image_id", "v_from", "deleted"]))
        return out

    @guard("write pages")
    def write(self, items: list[Indexed]) -> None:
        if not items:
            return
        with self._lock:
            index, meta = self._require_generation()
            spaces = ModelSpaces.model_validate(meta["spaces"])
            self._check_dims(items, spaces)
            p = self._next_version()
            by_id = {it.record.image_id: it for it in items}
            actions: list[dict[str, Any]] = []
            for row in self._current_rows(list(by_id)):
                src = row["_source"]
                if row["_id"] == f"{src['image_id']}@{p}":
                    continue  # the new row below overwrites it
                actions.append(
                    {"_op_type": "update", "_index": index, "_id": row["_id"], "routing": src["image_id"],
                     "doc": {"current": False, "v_to": p}}
                )
            for image_id, it in by_id.items():
                actions.append(
                    {"_op_type": "index", "_index": index, "_id": f"{image_id}@{p}", "routing": image_id,
                     "_source": row_document(it, p, base64_vectors=self.server_version >= (9, 3))}
                )
            self._dirty = True
            self._bulk_pages += len(by_id)
            failures = self._bulk(actions, "write")
            self._refresh()
            self._raise_failures(failures, len(by_id), "write")

    @staticmethod
    def _check_dims(items: list[Indexed], spaces: ModelSpaces) -> None:
        for it in items:
            v = it.vectors
            for name, vec, dim in (
                ("image", v.image, spaces.image_dim),
                ("feature", v.feature, spaces.feature_dim),
                ("text", v.text, spaces.text_dim),
            ):
                if np.asarray(vec).size != dim:
                    raise ImgragError(
                        f"the {name} vector of {it.record.image_id} has {np.asarray(vec).size} dimensions, the index {dim}",
                        "the configured embedding models differ from the index's: see `imgrag stats`",
                    )
            for r in it.regions:
                dim = spaces.image_dim if r.kind == "tile" else spaces.text_dim
                if np.asarray(r.vector).size != dim:
                    raise ImgragError(
                        f"region {r.region_id} has a {np.asarray(r.vector).size}-dimensional vector, the index {dim}",
                        "the configured embedding models differ from the index's",
                    )

    @guard("update metadata")
    def update_metadata(self, image_ids: list[str], update: MetadataUpdate) -> int:
        """Like :meth:`write` for the metadata only: the current row of each changed page is
        superseded by a copy (vectors and regions included) with the new ACL, tags and metadata,
        so a rollback to an earlier version brings the old metadata back."""
        if not image_ids or update.is_empty():
            return 0
        with self._lock:
            info = self._generation()
            if info is None:
                return 0
            index = info[0]
            p = self._next_version()
            ids = list(dict.fromkeys(image_ids))
            actions: list[dict[str, Any]] = []
            changed = 0
            for i in range(0, len(ids), 200):
                chunk = ids[i : i + 200]
                q = bool_filter([{"term": {"current": True}}, {"term": {"deleted": False}}, {"terms": {"image_id": chunk}}])
                hits = self._complete(
                    self.es.search, index=index, query=q, size=2 * len(chunk), sort=[{"v_from": "desc"}],
                    source={"includes": ["*"]},  # explicit includes: vectors come back too
                ).body["hits"]["hits"]
                for h in dedup(hits, hit_image_id):
                    src = h["_source"]
                    rec = update.apply(ImageRecord.model_validate(src["record"]))
                    if rec is None:
                        continue
                    if any(f not in src for f in SPACE_DIM):
                        raise ImgragError(
                            f"cannot update {rec.image_id}: Elasticsearch returned its row without vectors",
                            "nothing was changed; report this with the Elasticsearch version",
                        )
                    new_id = f"{rec.image_id}@{p}"
                    if h["_id"] != new_id:
                        actions.append(
                            {"_op_type": "update", "_index": index, "_id": h["_id"], "routing": rec.image_id,
                             "doc": {"current": False, "v_to": p}}
                        )
                    src.update(
                        acl=rec.acl, tags=rec.tags, meta_kv=meta_kv(rec),
                        fts=fts_source(rec), record=rec.model_dump(mode="json"), current=True, v_from=p,
                    )
                    src.pop("v_to", None)
                    actions.append(
                        {"_op_type": "index", "_index": index, "_id": new_id, "routing": rec.image_id, "_source": src}
                    )
                    changed += 1
            self._dirty = self._dirty or bool(actions)
            failures = self._bulk(actions, "update metadata")
            self._refresh()
            self._raise_failures(failures, changed, "update metadata")
            return changed

    @guard("replace the image space")
    def replace_image_space(self, spaces: ModelSpaces, new_vectors: ImageSpaceFn) -> ImageSpaceReplaced:
        """A new generation for the new space (a mapping's vector width is fixed), filled with the
        current rows of the live one carrying new image and tile vectors, then made live by an
        atomic alias switch. The old generation stays untouched: ``rollback`` to one of its
        versions switches back."""
        with self._lock:
            info = self._require_generation()
            current = ModelSpaces.model_validate(info[1]["spaces"])
            check_same_base_spaces(current, spaces)
            p = self._next_version()
            name, _ = self._create_generation(spaces)
            enc = vec_b64 if self.server_version >= (9, 3) else vec_list
            out = ImageSpaceReplaced()
            try:
                failures: dict[str, str] = {}
                batch: list[dict[str, Any]] = []

                def flush() -> None:
                    if not batch:
                        return
                    records = [
                        ImageRecord.model_validate(h["_source"]["record"]).model_copy(
                            update={"deleted": bool(h["_source"].get("deleted"))}
                        )
                        for h in batch
                    ]
                    feats = np.stack([source_vec(h["_source"]["feat_vec"]) for h in batch])
                    whole, tiles = new_vectors(feats, records)
                    actions = []
                    for i, h in enumerate(batch):
                        src = h["_source"]
                        if any(f not in src for f in SPACE_DIM):
                            raise ImgragError(
                                f"cannot re-embed {src.get('image_id')}: Elasticsearch returned its row without vectors",
                                "nothing was changed; report this with the Elasticsearch version",
                            )
                        for t in src.get("tiles") or []:
                            v = tiles[i].get(t["label"])
                            if v is None:
                                out.tiles_placeholder += 1
                                v = whole[i]
                            else:
                                out.tiles_from_pixels += 1
                            t["vector"] = enc(v)
                        for b in src.get("blocks") or []:
                            b["vector"] = enc(source_vec(b["vector"]))
                        src.update(
                            img_vec=enc(whole[i]), feat_vec=enc(source_vec(src["feat_vec"])),
                            text_vec=enc(source_vec(src["text_vec"])), current=True, v_from=p,
                        )
                        src.pop("v_to", None)
                        actions.append(
                            {"_op_type": "index", "_index": name, "_id": f"{src['image_id']}@{p}",
                             "routing": src["image_id"], "_source": src}
                        )
                    failures.update(self._bulk(actions, "re-embed"))
                    self._bulk_pages += len(batch)
                    out.images += len(batch)
                    batch.clear()

                rows = self._scan(bool_filter([{"term": {"current": True}}]), {"includes": ["*"]}, index=info[0], page=200)
                for h in dedup(rows, lambda h: h["_source"]["image_id"]):
                    batch.append(h)
                    if len(batch) >= 200:
                        flush()
                flush()
                self.es.indices.refresh(index=name)
                self._raise_failures(failures, out.images, "re-embed")
            except BaseException:
                self.es.indices.delete(index=name, ignore_unavailable=True)  # the old generation stays live
                raise
            self._switch_alias(name)
            return out

    @guard("soft-delete images")
    def soft_delete(self, image_ids: list[str]) -> int:
        if not image_ids:
            return 0
        with self._lock:
            info = self._generation()
            if info is None:
                return 0
            p = self._next_version()
            rows = dedup(self._current_rows(list(dict.fromkeys(image_ids)), [{"term": {"deleted": False}}]),
                          lambda r: r["_source"]["image_id"])
            actions = [
                {"_op_type": "update", "_index": info[0], "_id": r["_id"], "routing": r["_source"]["image_id"],
                 "doc": {"deleted": True, "deleted_in": p}}
                for r in rows
            ]
            self._dirty = self._dirty or bool(actions)
            failures = self._bulk(actions, "soft delete")
            self._refresh()
            self._raise_failures(failures, len(actions), "soft delete")
            return len(actions)

    @guard("purge deleted images")
    def purge(self) -> int:
        with self._lock:
            info = self._generation()
            if info is None:
                return 0
            q = bool_filter([{"term": {"current": True}}, {"term": {"deleted": True}}])
            ids = sorted({h["_source"]["image_id"] for h in self._scan(q, ["image_id"])})
            if not ids:
                return 0
            actions: list[dict[str, Any]] = []
            for i in range(0, len(ids), 1000):
                # every row of these images, history included: purged means gone for good
                for h in self._scan({"terms": {"image_id": ids[i : i + 1000]}}, ["image_id"]):
                    actions.append(
                        {"_op_type": "delete", "_index": info[0], "_id": h["_id"], "routing": h["_source"]["image_id"]}
                    )
            failures = self._bulk(actions, "purge")
            self._refresh()
            self._raise_failures(failures, len(ids), "purge")
            self._expunge_deleted(info[0])
            return len(ids)

    def _expunge_deleted(self, index: str) -> None:
        """Make the purge an erasure on disk too. A deleted document stays in its Lucene segment until
        a merge drops it, and a merge keeps it while a retention lease still covers its operation (the
        lease follows the global checkpoint, synced every ~30 s): so flush, then merge every segment
        that holds any deleted document (``expunge_deletes_allowed`` 0, not the default 10 %) until the
        index reports none, waiting up to ``es_merge_wait_s``. Past that the pages are gone from every
        search and the server drops their bytes at its later merges: logged, never raised (the purge
        itself is done and versioned)."""
        deadline = time.monotonic() + self.settings.es_merge_wait_s
        try:
            self.es.indices.put_settings(index=index, settings={"index.merge.policy.expunge_deletes_allowed": 0})
            while True:
                self.es.indices.flush(index=index)
                task = self.es.indices.forcemerge(index=index, only_expunge_deletes=True, wait_for_completion=False)["task"]
                while not (done := self._task(task))["completed"] and time.monotonic() < deadline:
                    time.sleep(_MERGE_POLL_S)
                if done.get("error"):
                    raise RuntimeError(done["error"])
                left = int(self.es.indices.stats(index=index, metric="docs")["indices"][index]["total"]["docs"]["deleted"])
                if not left:
                    return
                if time.monotonic() >= deadline:
                    log.warning("purged pages are gone from search, but %s still holds %d deleted document(s) on disk "
                                "after %.0f s (IMGRAG_ES_MERGE_WAIT_S); Elasticsearch drops them at its next merges",
                                index, left, self.settings.es_merge_wait_s)
                    return
                time.sleep(min(_EXPUNGE_RETRY_S, max(0.0, deadline - time.monotonic())))
        except Exception as e:
            log.warning("purged pages are gone from search, but could not expunge them from %s's segments (%s); "
                        "Elasticsearch drops them at its next merges", index, error_reason(e))
