"""Three-level fault alarms: the realtime alarm block becomes alarm episodes.

The writer calls :class:`AlarmTracker` for every newly stored data frame, in the writer's
transaction. Per vehicle, in collection-time order: a frame whose alarm block shows a
level, a general flag or a fault code opens an episode (or extends the open one: highest
level, union of flags and codes, last seen); the first clear frame closes it. Frames
older than what the vehicle already reported (a late reissue) do not move an episode.
A level-3 alarm (stop / call for help; 2025 also 4, thermal event) is logged at once.

Operators acknowledge and mark episodes handled through the API (who and when).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter

import structlog

from codec import Command, RealtimeData

log = structlog.get_logger("relay.alarms")

FAULT_LISTS = ("battery_faults", "motor_faults", "engine_faults", "other_faults")
_DATA = (Command.REALTIME, Command.REISSUE)
_BY_TIME = itemgetter(0)
#: the id of an episode opened in the batch being written, until the batch inserts it
_NEW = -1


def _active(alarm: dict) -> bool:
    """A level, a general flag or a fault code."""
    return bool(alarm.get("max_level") or alarm.get("flags") or alarm.get("battery_faults")
                or alarm.get("motor_faults") or alarm.get("engine_faults") or alarm.get("other_faults"))


@dataclass
class _Open:
    """An open episode, or (``id`` None) a vehicle whose last episode is closed."""

    id: int | None
    max_level: int
    flags: list[str]
    codes: list[int]
    last_seen: datetime
    frames: int = 0
    dirty: bool = False
    closed_at: datetime | None = None


@dataclass
class AlarmTracker:
    """Writer hook (runs on the writer thread; keeps open episodes in memory)."""

    _open: dict = field(default_factory=dict)  # vin -> _Open | None (None = known to have none open)
    opened: int = 0
    closed: int = 0

    def reset(self) -> None:
        """After a rolled-back transaction the cache may disagree with the database."""
        self._open.clear()

    def __call__(self, cur, inserted: list) -> None:
        seen = []
        alarming = set()  # vehicles with an alarm in this batch
        for _fid, item in inserted:
            frame = item.frame
            if frame.command not in _DATA or frame.is_answer:
                continue
            body = frame.body
            if not isinstance(body, RealtimeData):
                continue
            alarm = body.items.get("alarm")
            if not isinstance(alarm, dict):
                continue
            active = _active(alarm)
            if active:
                alarming.add(frame.vin)
            seen.append((frame.vin, body.collected_at, alarm, active))
        readings = []
        open_ = self._open
        for vin, at, alarm, active in seen:
            known = open_.get(vin)
            if not active and known is not None and known.id is None and vin not in alarming:
                # the usual frame: no alarm, none open, none in this batch: it only moves
                # the vehicle's time on (no sorting needed for a maximum)
                if at > known.last_seen:
                    known.last_seen = at
                continue
            readings.append((vin, at, alarm))
        if not readings:
            return
        # each vehicle's readings in collection-time order (they nearly always arrive so)
        by_vin: dict[str, list] = {}
        for vin, at, alarm in readings:
            by_vin.setdefault(vin, []).append((at, alarm))
        unknown = sorted(vin for vin in by_vin if vin not in self._open)
        if unknown:
            # the open episode of each vehicle, else when its last episode closed
            for vid, vin, level, flags, codes, last, closed in cur.execute(
                    "SELECT DISTINCT ON (vin) id, vin, max_level, flags, fault_codes, last_seen, closed_at "
                    "FROM alarms WHERE vin = ANY(%s) ORDER BY vin, (closed_at IS NULL) DESC, opened_at DESC",
                    (unknown,)):
                if closed is None:
                    self._open[vin] = _Open(vid, level, list(flags), list(codes), last)
                else:
                    self._open[vin] = _Open(None, 0, [], [], closed)
            for vin in unknown:
                self._open.setdefault(vin, None)
        created: list[tuple[str, datetime, _Open]] = []  # episodes opened in this batch, written at the end
        touched: dict[int, _Open] = {}  # existing episodes changed (one batch may close one and open the next)
        for vin, vin_readings in by_vin.items():
            if len(vin_readings) > 1:
                vin_readings.sort(key=_BY_TIME)
            for at, alarm in vin_readings:
                level = alarm.get("max_level") or 0
                flags = alarm.get("flags") or []
                codes = [c for key in FAULT_LISTS for c in (alarm.get(key) or [])]
                active = level > 0 or bool(flags) or bool(codes)
                known = self._open.get(vin)
                if known is not None and at < known.last_seen:
                    continue  # late data (a reissue): the vehicle has reported since
                episode = known if known is not None and known.id is not None else None
                if active:
                    if episode is None:
                        opened = _Open(_NEW, level, list(flags), codes, at, 0)
                        created.append((vin, at, opened))
                        self._open[vin] = opened
                        self.opened += 1
                        if level >= 3:
                            log.warning("alarm_level3", vin=vin, level=level, flags=flags, codes=codes,
                                        collected_at=at.isoformat())
                        continue
                    if level >= 3 > episode.max_level:
                        log.warning("alarm_level3", vin=vin, level=level, flags=flags, codes=codes,
                                    collected_at=at.isoformat())
                    episode.max_level = max(episode.max_level, level)
                    episode.flags += [f for f in flags if f not in episode.flags]
                    episode.codes += [c for c in codes if c not in episode.codes]
                    episode.last_seen = at
                    episode.frames += 1
                    episode.dirty = True
                    if episode.id != _NEW:
                        touched[episode.id] = episode
                elif episode is not None:
                    episode.closed_at = at
                    episode.dirty = True
                    if episode.id != _NEW:
                        touched[episode.id] = episode
                    self._open[vin] = _Open(None, 0, [], [], at)
                    self.closed += 1
                elif known is not None:
                    known.last_seen = at
                else:
                    self._open[vin] = _Open(None, 0, [], [], at)
        if created:
            # one statement for the batch's new episodes, in their final state (returning ids in order)
            cur.executemany(
                "INSERT INTO alarms (vin, opened_at, last_seen, max_level, flags, fault_codes, frames, closed_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                [(vin, at, e.last_seen, e.max_level, e.flags, e.codes, 1 + e.frames, e.closed_at)
                 for vin, at, e in created], returning=True)
            ids = []
            while True:
                ids.append(cur.fetchone()[0])
                if not cur.nextset():
                    break
            for (_, _, e), vid in zip(created, ids):
                e.id = vid if e.closed_at is None else None  # a closed one is history already
                e.frames = 0
                e.dirty = False
        updates = [(e.max_level, e.flags, e.codes, e.last_seen, e.frames, e.closed_at, e.id)
                   for e in touched.values() if e.dirty]
        if updates:
            cur.executemany("UPDATE alarms SET max_level = %s, flags = %s, fault_codes = %s, last_seen = %s, "
                            "frames = frames + %s, closed_at = %s WHERE id = %s", updates)
        for e in touched.values():
            e.dirty = False
            e.frames = 0
