"""TLS settings for wss:// (Qt: ``QSslConfiguration``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import _wsbind

__all__ = ["SslConfiguration"]


def _pem(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{what} must be PEM text or the path of a PEM file, not {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class SslConfiguration:
    """TLS settings of a socket or a server (Qt: ``QSslConfiguration``).

    Each certificate or key is PEM text or the path of a PEM file.

    On a client socket: ``ca_certificates`` are trusted besides the system's
    store (which ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` extend);
    ``local_certificate`` and ``private_key`` are presented for mutual TLS;
    ``peer_verify=False`` turns certificate verification off — use
    ``WebSocket.ignore_ssl_errors()``, which says so loudly.

    On a server: ``peer_verify=True`` requires clients to present a
    certificate signed by one of ``ca_certificates`` (mutual TLS). The
    server's own certificate is ``WebSocketServer.certificate``.
    """

    ca_certificates: tuple[str, ...] = ()
    local_certificate: str | None = None
    private_key: str | None = None
    peer_verify: bool | None = None
    """None is Qt's AutoVerifyPeer: a client verifies the server, a server asks no client certificate."""

    def __post_init__(self) -> None:
        cas = self.ca_certificates
        cas = (cas,) if isinstance(cas, str) else tuple(cas if isinstance(cas, Iterable) else [cas])
        object.__setattr__(self, "ca_certificates", tuple(_pem(c, "a CA certificate") for c in cas))
        for name in ("local_certificate", "private_key"):
            value = getattr(self, name)
            if value is not None:
                _pem(value, name)
        if (self.local_certificate is None) != (self.private_key is None):
            raise ValueError("local_certificate and private_key go together")
        if self.peer_verify is not None and not isinstance(self.peer_verify, bool):
            raise TypeError(f"peer_verify must be a bool or None, not {type(self.peer_verify).__name__}")

    def _options(self, *, client: bool) -> _wsbind.TlsOptions:
        """The settings as the native module takes them."""
        return {
            "ca_certificates": list(self.ca_certificates),
            "local_certificate": self.local_certificate,
            "private_key": self.private_key,
            "peer_verify": client if self.peer_verify is None else self.peer_verify,
        }
