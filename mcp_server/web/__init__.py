"""The web viewer: search, page view with overlays, ask with its trace, and the collection, served
as plain HTML/CSS/JS by the Python app (no build step, nothing fetched at run time).

``imgrag serve --http`` mounts it on the MCP server's own Starlette app (same port; a browser logs
in with a bearer token from the same token file and sees exactly what that token's agent sees);
``imgrag ui`` serves it alone on 127.0.0.1 for the local operator. Everything goes through the
``Imgrag`` facade with the caller's ``Principal``.
"""

from __future__ import annotations

from .models import Asker, AskCall, AskStep, TraceHit
from .viewer import WebViewer, operator_login

__all__ = ["Asker", "AskCall", "AskStep", "TraceHit", "WebViewer", "operator_login"]
