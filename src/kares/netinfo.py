"""Where a request comes from: the client IP and an approximate place for it.

The place is only a coarse label (city or network kind) for the signed-in
devices list; it comes from a CIDR table loadable from CSV
(``KARES_IP_PLACES_CSV``, lines ``cidr,place``). No table, no place.
"""

from __future__ import annotations

import csv
import ipaddress
import logging
from bisect import bisect_right
from pathlib import Path

log = logging.getLogger("kares.netinfo")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(peer: str | None, forwarded_for: str | None, trusted_proxies: list[str]) -> str:
    """The caller's IP: the peer, or the right-most untrusted X-Forwarded-For hop."""
    ip = peer or "0.0.0.0"  # noqa: S104 - a label for "unknown", never bound
    if not forwarded_for or not _is_trusted(ip, trusted_proxies):
        return ip
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return ip
        if not _is_trusted(hop, trusted_proxies):
            return hop
        ip = hop
    return ip


def _is_trusted(ip: str, trusted: list[str]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for entry in trusted:
        try:
            if addr in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


class PlaceResolver:
    def __init__(self, rows: list[tuple[IPNetwork, str]] | None = None) -> None:
        self._v4: list[tuple[int, int, str]] = []
        self._v6: list[tuple[int, int, str]] = []
        for net, place in rows or []:
            table = self._v4 if net.version == 4 else self._v6
            table.append((int(net.network_address), int(net.broadcast_address), place))
        self._v4.sort()
        self._v6.sort()
        self._v4_starts = [r[0] for r in self._v4]
        self._v6_starts = [r[0] for r in self._v6]

    @classmethod
    def from_csv(cls, path: Path | None) -> PlaceResolver:
        if path is None:
            return cls()
        rows: list[tuple[IPNetwork, str]] = []
        with path.open(newline="", encoding="utf-8") as fh:
            for n, rec in enumerate(csv.reader(fh), 1):
                if not rec or rec[0].startswith("#"):
                    continue
                try:
                    rows.append(
                        (ipaddress.ip_network(rec[0].strip(), strict=False), rec[1].strip())
                    )
                except (ValueError, IndexError):
                    log.warning("ip places csv line %d skipped: not cidr,place", n)
        return cls(rows)

    def place(self, ip: str) -> str | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if addr.is_loopback:
            return "This machine"
        if addr.is_private or addr.is_link_local:
            return "Local network"
        table, starts = (
            (self._v4, self._v4_starts) if addr.version == 4 else (self._v6, self._v6_starts)
        )
        i = bisect_right(starts, int(addr)) - 1
        if i >= 0 and table[i][0] <= int(addr) <= table[i][1]:
            return table[i][2]
        return None
