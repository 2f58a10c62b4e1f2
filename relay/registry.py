"""The vehicle registry: VIN -> use sector, region code, owner.

Imported from CSV (``relay registry import``), kept in PostgreSQL, and mirrored in
memory by :class:`RegistryCache` for the writer's policy decisions (refreshed on a
timer, so an import reaches a running node without a restart).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import psycopg

from .policy import VehicleEntry

#: GB 16735 VIN: 17 characters, no I, O or Q
VIN_RE = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
REGION_RE = re.compile(r"^\d{6}$")
COLUMNS = ("vin", "sector", "region_code", "owner", "model", "plate")
SECTORS = ("private", "bus", "taxi", "ride_hailing", "sanitation", "logistics", "postal", "official", "rental",
           "car_sharing", "coach", "school_bus", "engineering", "other_public")


class RegistryError(ValueError):
    pass


def valid_vin(vin: str) -> bool:
    return bool(VIN_RE.match(vin))


def read_csv(path: str | Path) -> list[tuple]:
    """Rows of a registry CSV, validated; raises :class:`RegistryError` naming line and column."""
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS[:4] if c not in (reader.fieldnames or ())]
        if missing:
            raise RegistryError(f"{path}: header lacks {', '.join(missing)} (expected {', '.join(COLUMNS)})")
        for line, rec in enumerate(reader, start=2):
            vin = (rec.get("vin") or "").strip().upper()
            sector = (rec.get("sector") or "").strip()
            region = (rec.get("region_code") or "").strip()
            owner = (rec.get("owner") or "").strip()
            if not valid_vin(vin):
                raise RegistryError(f"{path}:{line}: vin {vin!r} is not a 17-character VIN")
            if sector not in SECTORS:
                raise RegistryError(f"{path}:{line}: sector {sector!r} is not one of {', '.join(SECTORS)}")
            if not REGION_RE.match(region):
                raise RegistryError(f"{path}:{line}: region_code {region!r} is not a 6-digit code")
            if not owner:
                raise RegistryError(f"{path}:{line}: owner is empty")
            rows.append((vin, sector, region, owner, (rec.get("model") or "").strip(),
                         (rec.get("plate") or "").strip()))
    return rows


def upsert(conn: psycopg.Connection, rows: list[tuple]) -> int:
    with conn.transaction():
        conn.cursor().executemany(
            "INSERT INTO vehicles (vin, sector, region_code, owner, model, plate) VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (vin) DO UPDATE SET sector = EXCLUDED.sector, region_code = EXCLUDED.region_code, "
            "owner = EXCLUDED.owner, model = EXCLUDED.model, plate = EXCLUDED.plate, updated_at = now() "
            "WHERE (vehicles.sector, vehicles.region_code, vehicles.owner, vehicles.model, vehicles.plate) "
            "IS DISTINCT FROM (EXCLUDED.sector, EXCLUDED.region_code, EXCLUDED.owner, EXCLUDED.model, "
            "EXCLUDED.plate)", rows)
    return len(rows)


def load(conn: psycopg.Connection) -> dict[str, VehicleEntry]:
    with conn.transaction():
        return {r[0]: VehicleEntry(*r) for r in conn.execute("SELECT vin, sector, region_code, owner FROM vehicles")}


class RegistryCache:
    """An in-memory copy of the registry; replaced as a whole on refresh (safe to read
    from the writer thread while the reactor swaps it)."""

    def __init__(self, entries: dict[str, VehicleEntry] | None = None) -> None:
        self.entries: dict[str, VehicleEntry] = entries or {}

    def get(self, vin: str) -> VehicleEntry | None:
        return self.entries.get(vin)

    def replace(self, entries: dict[str, VehicleEntry]) -> None:
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)
