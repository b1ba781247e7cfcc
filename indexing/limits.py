"""Every bound on what one request may ask for, in one place: the facade enforces them and the MCP
schemas publish them, so a client reads the same numbers the server applies. ``max_k`` is a setting
(``IMGRAG_MAX_K``); the rest are fixed by what clients and models can take."""

from __future__ import annotations

MAX_QUERY_CHARS = 2000  # one search query
MAX_OFFSET = 1000  # deepest hit reachable by paging
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
MAX_ID_CHARS = 200  # an image id
