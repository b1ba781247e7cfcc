"""Who is calling: one fixed principal over stdio, bearer tokens mapped to principals over HTTP.

The token file is JSON, ``{"<token>": {"name": "alice", "groups": ["legal"]}, ...}``; an entry may
set ``"all_access": true`` for an operator token that sees everything, or ``"pii": true`` for a
principal cleared to see personal data unmasked (``Principal.sees_pii``; see indexing/pii.py). It
is re-read when it changes, so tokens are added and revoked without restarting the server. Tokens
are compared by their SHA-256, so the lookup does not leak how much of a guessed token matched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from imgrag.indexing.errors import ImgragError
from imgrag.indexing.stores.base import OPERATOR, OPERATOR_ONLY, Principal
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

log = logging.getLogger("imgrag.mcp")

PrincipalResolver = Callable[[], Principal]
"""Called inside each request; returns whom the request acts for (raises if nobody)."""

MIN_TOKEN_CHARS = 16


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    groups: list[str] = Field(default_factory=list)
    all_access: bool = False
    pii: bool = False  # PII clearance: sees personal data unmasked (all_access implies it)

    @field_validator("name", "groups")
    @classmethod
    def _not_reserved(cls, v: Any) -> Any:
        for t in [v] if isinstance(v, str) else v:
            if t.startswith("@"):
                raise ValueError(f"{t!r}: names and groups starting with @ are reserved ({OPERATOR_ONLY} marks pages only operators see)")
        return v

    def principal(self) -> Principal:
        return Principal(name=self.name, groups=list(self.groups), all_access=self.all_access, pii_clearance=self.pii)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_tokens(path: Path) -> dict[str, TokenEntry]:
    """Parse a token file into ``sha256(token) -> entry``; raise ImgragError naming the problem."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ImgragError(f"token file {path} does not exist", "create it: {\"<token>\": {\"name\": \"alice\", \"groups\": [\"legal\"]}}") from e
    except (OSError, ValueError) as e:
        raise ImgragError(f"token file {path} is not readable JSON ({e})", "fix the JSON: {\"<token>\": {\"name\": ..., \"groups\": [...]}}") from e
    if not isinstance(raw, dict) or not raw:
        raise ImgragError(f"token file {path} holds no tokens", "map each token to {\"name\": ..., \"groups\": [...]}")
    out: dict[str, TokenEntry] = {}
    for token, entry in raw.items():
        if len(token) < MIN_TOKEN_CHARS:
            raise ImgragError(
                f"token file {path}: a token for {entry.get('name') if isinstance(entry, dict) else '?'} is shorter than {MIN_TOKEN_CHARS} characters",
                "use long random tokens, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
            )
        try:
            out[_digest(token)] = TokenEntry.model_validate(entry)
        except ValidationError as e:
            raise ImgragError(f"token file {path}: bad entry ({e.errors()[0]['msg']})", "each entry is {\"name\": str, \"groups\": [str], \"all_access\": bool, \"pii\": bool}") from e
    if os.name == "posix" and path.stat().st_mode & 0o004:
        log.warning("token file %s is world-readable; chmod 600 it", path)
    return out


class TokenFileVerifier:
    """The SDK's ``TokenVerifier`` over a token file; unknown tokens verify to ``None`` (HTTP 401)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._tokens: dict[str, TokenEntry] = {}
        self._reload(force=True)

    def _reload(self, force: bool = False) -> None:
        try:
            st = self.path.stat()
        except OSError:
            if force:
                raise ImgragError(f"token file {self.path} does not exist", "create it or fix --tokens")
            log.error("token file %s disappeared; refusing every token until it is back", self.path)
            self._tokens, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if not force and stamp == self._stamp:
            return
        with self._lock:
            try:
                self._tokens = load_tokens(self.path)
                self._stamp = stamp
                log.info("loaded %d token(s) from %s", len(self._tokens), self.path)
            except ImgragError as e:
                if force:
                    raise
                log.error("token file changed but cannot be used (%s); keeping the previous tokens", e)
                self._stamp = stamp

    def entry(self, token: str) -> TokenEntry | None:
        self._reload()
        return self._tokens.get(_digest(token))

    async def verify_token(self, token: str) -> AccessToken | None:
        entry = self.entry(token)
        if entry is None:
            log.warning("refused a request with an unknown bearer token")
            return None
        return AccessToken(
            token=token,
            client_id=entry.name,
            subject=entry.name,
            scopes=[],
            claims={"groups": list(entry.groups), "all_access": entry.all_access, "pii": entry.pii},
        )


def principal_from_settings(name: str | None, groups: list[str]) -> Principal:
    """stdio: IMGRAG_PRINCIPAL/IMGRAG_GROUPS, or the local operator (sees everything) when both are unset."""
    if name is None and not groups:
        return OPERATOR
    return Principal(name=name, groups=list(groups))


def fixed_principal(principal: Principal) -> PrincipalResolver:
    return lambda: principal


def bearer_principal() -> Principal:
    """HTTP: the principal of the bearer token the SDK's auth middleware verified for this request."""
    token = get_access_token()
    if token is None:
        # The transport refuses unauthenticated requests before they get here; never fall back to more access.
        raise ImgragError("this request carries no verified bearer token", "send Authorization: Bearer <token>")
    claims = token.claims or {}
    return Principal(
        name=token.subject or token.client_id,
        groups=[str(g) for g in claims.get("groups", [])],
        all_access=bool(claims.get("all_access", False)),
        pii_clearance=bool(claims.get("pii", False)),
    )
