"""The project's own benchmarks: ``relay bench codec|ingest|e2e|export|api|soak [--json]``.

* ``codec``  — decode/encode/FrameReader throughput on one core (:mod:`.codec_bench`);
* ``ingest`` — an enterprise node on a real PostgreSQL fed by N simulated terminals from a
  separate load-generator process (:mod:`.ingest_bench`, :mod:`.loadgen`);
* ``e2e``    — enterprise -> municipal -> provincial (and enterprise -> provincial), each tier a
  ``relay run`` process on one PostgreSQL, with the latency from terminal to province
  (:mod:`.e2e_bench`);
* ``export`` — 20 vehicles x 3 months of 10-second data exported as CSV (:mod:`.export_bench`);
* ``api``    — API response times with 100,000 registered vehicles (:mod:`.api_bench`);
* ``soak``   — a long run of many terminals at the standard's 10-second interval, memory and
  latency over time (:mod:`.soak_bench`);
* any other ``relay.bench.<name>_bench`` module with a ``run(args)`` is ``relay bench <name>``.

Each prints human-readable lines; with ``--json`` the last line printed is one JSON object
of figures with their units in the key names (interfaces.md). Exit status 0 on success,
1 when the run failed (a node did not start, a terminal could not log in, frames were lost).

The database of ``ingest`` and ``e2e`` is the server in ``RELAY_BENCH_DSN`` when set, else an
embedded PostgreSQL (pgserver) in a temporary directory; each run creates fresh databases
on it and drops them at the end (``RELAY_BENCH_KEEP=1`` keeps them).
"""

from __future__ import annotations

import json
import sys


def emit(result: dict, as_json: bool, lines: list[str] | None = None, out=None) -> None:
    """Print the human-readable lines, then (with ``--json``) the figures as the last line."""
    out = out or sys.stdout
    for line in lines or ():
        print(line, file=out)
    if as_json:
        print(json.dumps(result), file=out)
    out.flush()


def run_bench(what: str, args) -> int:
    """Run one benchmark (module ``relay.bench.<what>_bench``, function ``run(args)``);
    return the exit status."""
    import importlib

    if not what.isidentifier():
        print(f"relay bench: unknown benchmark {what!r}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"{__name__}.{what}_bench")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{what}_bench":
            raise
        print(f"relay bench: unknown benchmark {what!r}", file=sys.stderr)
        return 2
    return module.run(args)


__all__ = ["run_bench", "emit"]
