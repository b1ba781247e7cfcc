"""Distributed backend: Elasticsearch 9.x through the official client, on the free basic licence.

Layout (``P`` = ``IMGRAG_ES_INDEX_PREFIX``):

* ``P`` — an alias over exactly one *generation* index ``P-g000001``, ``P-g000002``, ... Each
  generation is built with one set of embedding models (recorded in the mapping's ``_meta``).
  Reads and writes go through the alias; switching models or rolling back to a version built
  with other models swaps the alias atomically.
* ``P-versions`` — the version log, one small document per committed version: number, time,
  operation, summary, spaces and the generation it was committed in.
* ``P-audit`` — the audit log (:mod:`indexing.audit`), one document per recorded call or write.

One document per page *row*: the filter fields (acl, deleted, quality, tags, meta, dates, path,
doc id, seal, PII flag and kinds), the analysed full text ``fts``, the stored-only ``record`` (the ImageRecord JSON),
three ``dense_vector`` fields and the page's regions as two ``nested`` fields (``tiles`` in the
image-text space, ``blocks`` in the OCR-text space) so a region kNN hit names its region through
``inner_hits`` and every filter of the page applies to its regions for free.

Versions are multi-version rows rather than snapshots (the basic licence has no cheap snapshots
and the minimal distribution has no ``_reindex``): a row lives for versions ``[v_from, v_to)``
(``current`` while ``v_to`` is unset) and a soft delete stamps ``deleted_in``. Replacing a page
supersedes its row and writes a new one; ``rollback(n)`` supersedes rows written after ``n`` and
re-creates the rows that were live at ``n`` — its cost is proportional to what changed since
``n``, not to the index size. Every query filters ``current`` and ``deleted`` inside the query.
``purge`` removes soft-deleted images with their whole history, so they cannot come back.

Fusion is not done here (see :mod:`indexing.search`); ACL and filters always go inside
``knn.filter`` and the BM25 ``bool.filter``, never after the fact.

The package follows those jobs: :mod:`.client` (the client, error translation, search/scan
primitives), :mod:`.mapping` (a generation's mapping and a page's row document), :mod:`.queries`
(filter, kNN and BM25 bodies), :mod:`.generations` (generation indices and the alias),
:mod:`.versions` (the version log and rollback), :mod:`.writes` (bulk writes, metadata updates,
deletes, re-embedding), :mod:`.reads` (lookups and searches); :mod:`.store` puts them together.
"""

from .client import BulkWriteError, audit_index_name, check_index_name, connect, translate
from .store import ElasticStore, open_elastic

__all__ = ["BulkWriteError", "ElasticStore", "audit_index_name", "check_index_name", "connect", "open_elastic", "translate"]
