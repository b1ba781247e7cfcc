"""Every bound on what one request may ask for, in one place: the facade enforces them and the MCP
schemas publish them, so a client reads the same numbers the server applies. ``max_k`` is a setting
(``IMGRAG_MAX_K``); the rest are fixed by what clients and models can take."""

from __future__ import annotations

from typing import NamedTuple

MAX_QUERY_CHARS = 2000  # one search query
MAX_OFFSET = 1000  # deepest hit reachable by paging
MAX_DEPTH = 1000  # deepest a route reads for one search (or 3 x IMGRAG_MAX_K, if more); region routes 4x
MAX_CROP_SCALE = 4.0  # zoom of crop_region / ocr_region
MAX_CROP_SIDE = 1600  # long side of a returned crop, px (vision models downscale beyond ~1568 anyway)
MAX_CROP_BYTES = 1_500_000  # one PNG crop; larger ones are downscaled until they fit
THUMB_SIDE = 192  # long side of a search thumbnail
RESOURCE_THUMB_SIDE = 256  # imgrag://thumbnail/{id}
MAX_THUMBNAILS = 10  # thumbnails attached to one search result
MAX_RESOURCE_SIDE = 4096  # imgrag://image/{id} is downscaled beyond this
MAX_RESOURCE_BYTES = 8_000_000
OCR_TARGET_TEXT_PX = 32  # ocr_region scale=auto zooms until text lines are about this tall
MAX_OCR_PIXELS = 12_000_000  # upscaled region handed to OCR
MAX_OCR_LINES = 2000  # OCR lines one get_metadata call returns
DEFAULT_OCR_LINES = 200
MAX_TEXT_CHARS = 20_000  # ocr_text / table html returned by get_metadata
MAX_INDEX_PATHS = 100  # paths one index call names
MAX_PATH_CHARS = 4096  # one path (or path prefix)
MAX_ID_CHARS = 200  # an image id

# Filters and user metadata: each is a query term or a stored field, so each is bounded.
MAX_FILTER_IDS = 1000  # filters.image_ids
PREFIX_SCAN = 5000  # pages one filters.path_prefix may match for a caller without PII clearance (each is checked)
MAX_TAGS = 50  # tags in a filter or on an index call
MAX_META = 50  # user metadata key/value pairs
MAX_ACL = 50  # principals/groups in one ACL
MAX_LABEL_CHARS = 200  # one tag, ACL entry or metadata key
MAX_META_VALUE_CHARS = 2000  # one metadata value


class PayloadBudget(NamedTuple):
    """How many bytes one response may take on a transport, and what that leaves for images.

    Over streamable HTTP a whole JSON-RPC response travels as one server-sent event, and the MCP
    Python SDK's client refuses events over 1 MiB by default (``max_sse_event_size``), so HTTP
    answers stay under 1,000,000 bytes. stdio has no framing limit; its caps are the fixed ones
    above. Images travel base64-encoded (4/3 of their size) next to the JSON that describes them.
    """

    transport: str
    response_bytes: int

    def image_bytes(self, cap: int, reserved: int = 32_000) -> int:
        """The largest image (raw bytes) one response can carry beside ``reserved`` bytes of JSON."""
        return max(16_000, min(cap, (self.response_bytes - reserved) * 3 // 4))

    @property
    def crop_bytes(self) -> int:
        return self.image_bytes(MAX_CROP_BYTES)

    @property
    def resource_bytes(self) -> int:
        return self.image_bytes(MAX_RESOURCE_BYTES, reserved=4_000)


SSE_EVENT_LIMIT = 1_048_576  # the MCP Python SDK client's default max_sse_event_size
STDIO_BUDGET = PayloadBudget("stdio", 16_000_000)
HTTP_BUDGET = PayloadBudget("http", 1_000_000)

# Heavy calls (OCR re-reads, crops and page images) go through fair gates (indexing/gate.py): a
# few run at once, the rest wait their turn by principal, and a caller past its share is told to
# retry instead of queueing without bound.
OCR_SLOTS = 1  # the OCR engine is serialised anyway: one re-read at a time
PIXEL_SLOTS = 2  # crops, page images, thumbnails decoded at once
PER_PRINCIPAL_CALLS = 3  # heavy calls one principal may have running or waiting, per gate
MAX_WAITING_CALLS = 16  # heavy calls waiting for a slot, all principals together, per gate
MAX_WAIT_SECONDS = 120.0  # longest a heavy call waits for its turn before it is told to retry
