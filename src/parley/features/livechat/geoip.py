"""The visitor's country from their IP, read from a MaxMind .mmdb file (PARLEY_GEOIP_DATABASE).

Optional: without a database every lookup answers None and `country` routing rules never
match. Lookups are memory-mapped reads taking microseconds, so they run on the event loop.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import maxminddb

log = logging.getLogger(__name__)


class GeoIP:
    def __init__(self, path: str) -> None:
        self.path = path
        self._reader: Any = None
        if path:
            try:
                self._reader = maxminddb.open_database(path)
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                # Routing still works without countries; readiness is not worth losing over it.
                log.error("GeoIP database %s could not be opened: %s", path, exc)

    @property
    def enabled(self) -> bool:
        return self._reader is not None

    def country(self, ip: str) -> str | None:
        """The ISO 3166-1 alpha-2 code for `ip`, or None (unknown, private, or no database)."""
        if self._reader is None:
            return None
        try:
            address = ipaddress.ip_address(ip)
            record = self._reader.get(address)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        for key in ("country", "registered_country"):
            code = (record.get(key) or {}).get("iso_code")
            if isinstance(code, str) and len(code) == 2:
                return code.upper()
        return None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
