"""Rows derived from frames, for the archive and the decoded tables (plain tuples).

Column order matches the COPY column lists in ``writer.py``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from codec import Command, Frame, RealtimeData
from codec.fields import PackedValues
from codec.forwarding import data_unit

DATA_COMMANDS = (Command.REALTIME, Command.REISSUE)

FRAME_COLUMNS = ("id", "collected_at", "received_at", "vin", "command", "response", "protocol", "encryption",
                 "peer", "kind", "digest", "raw")

REALTIME_COLUMNS = ("vin", "collected_at", "received_at", "frame_id", "reissue", "vehicle_state", "charging_state",
                    "run_mode", "speed_kmh", "odometer_km", "total_voltage_v", "total_current_a", "soc_pct",
                    "insulation_kohm", "gear", "position_valid", "longitude", "latitude", "alarm_level",
                    "alarm_flags", "fault_codes", "max_cell_v", "min_cell_v", "max_temp_c", "min_temp_c",
                    "abnormal_fields", "invalid_fields")

LATEST_COLUMNS = ("vin", "collected_at", "received_at", "vehicle_state", "charging_state", "speed_kmh", "odometer_km",
                  "total_voltage_v", "total_current_a", "soc_pct", "position_valid", "longitude", "latitude",
                  "alarm_level", "alarm_flags")


def kind_of(command: int) -> int:
    """Deduplication class: a reissue of data already received as realtime is the same data."""
    return Command.REALTIME if command in DATA_COMMANDS else command


def digest_of(frame: Frame) -> bytes:
    """The archive's digest of a frame's data unit (as sent: still encrypted if it was)."""
    return hashlib.md5(data_unit(frame.raw)).digest()


def dedup_key(frame: Frame) -> tuple:
    """What the archive deduplicates on (``frames_dedup``): unique id, command class and the
    data unit's digest (its collection time is part of the data unit)."""
    return frame.vin, kind_of(frame.command), digest_of(frame)


def frame_row(frame_id: int, frame: Frame, peer: str, received_at: datetime, key: tuple | None = None) -> tuple:
    """The archive row; ``key``: the frame's :func:`dedup_key` when it was computed already."""
    collected = frame.collected_at or received_at
    return (frame_id, collected, received_at, frame.vin, frame.command, frame.response, int(frame.edition.value),
            frame.encryption, peer, kind_of(frame.command), key[2] if key else digest_of(frame), frame.raw)


def _marked(items: dict) -> tuple[int, int]:
    """How many fields of the frame are marked abnormal and invalid (blocks are records
    or lists of records)."""
    a = i = 0
    for block in items.values():
        for rec in (block if isinstance(block, list) else (block,)):
            if isinstance(rec, dict):
                if "abnormal" in rec:
                    a += len(rec["abnormal"] or ())
                if "invalid" in rec:
                    i += len(rec["invalid"] or ())
    return a, i


def _extremes(items: dict) -> tuple:
    ext = items.get("extremes")
    if isinstance(ext, dict):
        return ext.get("max_cell_voltage_v"), ext.get("min_cell_voltage_v"), ext.get("max_temp_c"), ext.get("min_temp_c")
    cells = _values(items.get("cell_voltages"), "cells_v")
    temps = _values(items.get("probe_temperatures"), "temps_c")
    return (_pick(max, cells), _pick(min, cells), _pick(max, temps), _pick(min, temps))


def _values(subsystems, key: str) -> list:
    """The arrays under ``key`` of every subsystem (lists or still packed)."""
    if not isinstance(subsystems, list):
        return []
    return [sub[key] for sub in subsystems if isinstance(sub, dict) and sub.get(key)]


def _pick(fn, arrays: list):
    """max or min over the arrays' values, markers (None) left out; packed arrays are
    never read value by value."""
    found = []
    for arr in arrays:
        if isinstance(arr, PackedValues):
            v = arr.extreme(fn)
        else:
            present = [x for x in arr if x is not None]
            v = fn(present) if present else None
        if v is not None:
            found.append(v)
    return fn(found) if found else None


def realtime_row(frame_id: int, frame: Frame, received_at: datetime) -> tuple:
    body: RealtimeData = frame.body
    items = body.items
    veh = items.get("vehicle") or {}
    pos = items.get("position") or {}
    alarm = items.get("alarm") or {}
    faults = (len(alarm.get("battery_faults") or ()) + len(alarm.get("motor_faults") or ())
              + len(alarm.get("engine_faults") or ()) + len(alarm.get("other_faults") or ()))
    abnormal, invalid = _marked(items)
    max_v, min_v, max_t, min_t = _extremes(items)
    return (frame.vin, body.collected_at, received_at, frame_id, frame.command == Command.REISSUE,
            veh.get("state"), veh.get("charging_state"), veh.get("mode"), veh.get("speed_kmh"),
            veh.get("odometer_km"), veh.get("total_voltage_v"), veh.get("total_current_a"), veh.get("soc_pct"),
            veh.get("insulation_kohm"), veh.get("gear"), pos.get("valid") if pos else None, pos.get("longitude"),
            pos.get("latitude"), alarm.get("max_level"), alarm.get("flags") if alarm else None,
            faults if alarm else None, max_v, min_v, max_t, min_t, min(abnormal, 32767), min(invalid, 32767))


def latest_row(rt: tuple) -> tuple:
    """The latest-state row from a realtime row."""
    (vin, collected, received, _fid, _re, state, charging, _mode, speed, odo, volt, cur, soc, _ins, _gear, pvalid,
     lon, lat, level, flags, *_rest) = rt
    return (vin, collected, received, state, charging, speed, odo, volt, cur, soc, pvalid, lon, lat, level, flags)
