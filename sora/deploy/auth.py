"""The optional API key: when the server has one, every /v1/* request must carry it, as
``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; anything else answers 401. The key is compared in
constant time and never logged. /healthz, /metrics, the page and the API docs stay open: the page asks
for the key when /v1/* answers 401."""

from __future__ import annotations

import secrets

from fastapi import Depends, HTTPException
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer KEY (the server's --api-key)")
header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: KEY (the server's --api-key)")


def require_key(key: str):
    """A FastAPI dependency that lets a request through only with ``key``."""
    expected = key.encode()

    def check(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer), given: str | None = Depends(header)
    ) -> None:
        offered = [c for c in (credentials.credentials if credentials else None, given) if c]
        if not any(secrets.compare_digest(c.encode(), expected) for c in offered):
            raise HTTPException(
                401,
                detail="missing or wrong API key: send Authorization: Bearer KEY or X-API-Key: KEY",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check
