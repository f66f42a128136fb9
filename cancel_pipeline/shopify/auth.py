"""Where the client's `X-Shopify-Access-Token` comes from: a static token or the client-credentials grant.

Both keep their secrets in private attributes and out of `repr`, so neither a log line nor a traceback that
prints a provider can leak them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

#: The grant's answer: the access token and its lifetime in seconds (None when Shopify gives none).
TokenGrant = tuple[str, float | None]


class AccessTokenProvider(Protocol):
    """Supplies the token for each request and may renew it."""

    def token(self) -> str:
        """The token to send now (renewing it first if it is about to expire)."""
        ...

    def invalidate(self) -> bool:
        """Forget the current token after a 401; True when a fresh one can be obtained."""
        ...


class StaticToken:
    """A fixed Admin API token (`shpat_...`) of a custom app; it cannot be renewed."""

    def __init__(self, access_token: str) -> None:
        self._access_token = access_token

    def token(self) -> str:
        """The configured token."""
        return self._access_token

    def invalidate(self) -> bool:
        """A refused static token stays refused."""
        return False

    def __repr__(self) -> str:
        return "StaticToken(<hidden>)"


class ClientCredentialsToken:
    """Tokens from the client-credentials grant, renewed before they expire.

    `exchange` performs the form POST to `/admin/oauth/access_token` with the given fields and returns
    the token and `expires_in`. Renewal happens once `renew_fraction` of the lifetime has passed, so a
    long page walk never sends a token in its last moments (clock skew and slow pages would make that 401).
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        exchange: Callable[[dict[str, str]], TokenGrant],
        *,
        renew_fraction: float = 0.9,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._exchange = exchange
        self._renew_fraction = renew_fraction
        self._clock = clock
        self._access_token: str | None = None
        self._renew_at = math.inf
        self.exchanges = 0
        """How many tokens were obtained (first one included)."""

    def token(self) -> str:
        """The current token, fetching a new one first when none is held or renewal is due."""
        if self._access_token is None or self._clock() >= self._renew_at:
            self._renew()
        assert self._access_token is not None
        return self._access_token

    def invalidate(self) -> bool:
        """Drop the token so the next request exchanges the credentials again."""
        self._access_token = None
        return True

    def _renew(self) -> None:
        requested_at = self._clock()
        access_token, expires_in = self._exchange(
            {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            }
        )
        self._access_token = access_token
        self.exchanges += 1
        # Measured from the request, not the answer: the token's lifetime started at Shopify's end.
        self._renew_at = (
            math.inf if expires_in is None else requested_at + max(0.0, expires_in) * self._renew_fraction
        )

    def __repr__(self) -> str:
        return f"ClientCredentialsToken(client_id={self._client_id!r}, client_secret=<hidden>)"
