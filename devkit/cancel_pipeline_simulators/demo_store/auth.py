"""Access tokens: the configured static token and tokens issued by the client-credentials grant."""

from __future__ import annotations

import hmac
import secrets
import threading

SCOPE = "read_orders,read_all_orders"


class TokenRegistry:
    """Checks tokens and issues expiring ones; expiry follows the store's clock (UTC epoch seconds)."""

    def __init__(self, static_token: str, client_id: str, client_secret: str, expires_in: int) -> None:
        self._static = static_token
        self._client_id = client_id
        self._client_secret = client_secret
        self.expires_in = expires_in
        self.scope = SCOPE
        self._lock = threading.Lock()
        self._issued: dict[str, float] = {}

    def credentials_match(self, client_id: str, client_secret: str) -> bool:
        """Compare in constant time, as any secret comparison should."""
        id_ok = hmac.compare_digest(client_id.encode(), self._client_id.encode())
        secret_ok = hmac.compare_digest(client_secret.encode(), self._client_secret.encode())
        return id_ok and secret_ok

    def issue(self, now: float) -> str:
        """A new token valid for `expires_in` seconds from `now`."""
        token = "demo-issued-" + secrets.token_urlsafe(18)
        with self._lock:
            self._issued = {t: exp for t, exp in self._issued.items() if exp > now}
            self._issued[token] = now + self.expires_in
        return token

    def valid(self, token: str | None, now: float) -> bool:
        """The static token, or an issued one that has not expired."""
        if not token:
            return False
        if self._static and hmac.compare_digest(token.encode(), self._static.encode()):
            return True
        expiry = self._issued.get(token)
        return expiry is not None and now < expiry
