"""The ``relay`` command (interfaces.md). The only module that touches the global reactor.

Exit status: 0 success, 2 bad usage or bad config (one line saying what and where),
1 runtime failure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from .config import ROLES, ConfigError, load_config


class UsageError(Exception):
    """Bad usage detected after argument parsing (exit status 2)."""


def load_role(name: str):
    """The ``ROLE`` of ``platforms/<name>``; the name comes from validated config."""
    if name not in ROLES:
        raise ConfigError(f"role: unknown role {name!r}")
    return importlib.import_module(f"platforms.{name}").ROLE


def _config(args):
    cfg = load_config(args.config)
    from . import logs

    logs.configure(cfg.log.level, cfg.log.format)
    return cfg


# --- run ----------------------------------------------------------------------------

def cmd_run(args) -> int:
    cfg = _config(args)
    role = load_role(cfg.role)
    from .config import check_secrets

    try:
        check_secrets(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{cfg.source}: {exc}") from None
    from twisted.internet import task

    from . import logs
    from .node import start_node
    from .runtime import settle_gc

    logs.bridge_twisted()

    async def main(reactor):
        from twisted.internet.defer import Deferred

        try:
            node = await start_node(reactor, cfg, role)
        except Exception as exc:  # noqa: BLE001 - one line for the operator, then exit 1
            logs.get("relay.cli").error("node_start_failed", node=cfg.node_id, error=f"{type(exc).__name__}: {exc}")
            raise SystemExit(1) from None
        settle_gc()
        done: Deferred = Deferred()

        def shutdown():
            d = node.stop()
            d.addBoth(lambda _: done.callback(None) if not done.called else None)
            return d

        reactor.addSystemEventTrigger("before", "shutdown", shutdown)
        await done

    task.react(lambda reactor: _as_deferred(main(reactor)))
    return 0


def _as_deferred(coro):
    from twisted.internet.defer import Deferred

    return Deferred.fromCoroutine(coro)


def _react(main) -> None:
    """Run ``async main(reactor)`` on the global reactor until it finishes; a failure ends
    the process with status 1 (``react`` exits the process itself, even on success)."""
    from twisted.internet import task

    try:
        task.react(lambda reactor: _as_deferred(main(reactor)))
    except SystemExit as exc:
        if exc.code:
            raise


# --- decode / encode -------------------------------------------------------------------

def _read_input(args) -> bytes:
    if args.hex is not None:
        text = args.hex
    else:
        data = sys.stdin.buffer.read() if args.file in (None, "-") else Path(args.file).read_bytes()
        stripped = b"".join(data.split())
        try:
            if stripped and all(c in b"0123456789abcdefABCDEF" for c in stripped):
                return bytes.fromhex(stripped.decode("ascii"))
        except ValueError:
            pass
        return data
    try:
        return bytes.fromhex("".join(text.split()))
    except ValueError:
        raise UsageError("--hex: not a hexadecimal string") from None


def cmd_decode(args) -> int:
    import codec

    data = _read_input(args)
    reader = codec.FrameReader()
    items = reader.feed(data) + reader.close()
    errors = 0
    for item in items:
        if isinstance(item, codec.Frame):
            if args.protocol != "auto" and item.edition.value != args.protocol:
                errors += 1
                print(json.dumps({"error": "wrong_protocol", "protocol": item.edition.value,
                                  "detail": f"expected {args.protocol}"}), file=sys.stderr)
                continue
            print(json.dumps(codec.frame_to_json(item, raw=args.raw), ensure_ascii=False))
        else:
            errors += 1
            print(json.dumps({"error": item.reason, "offset": item.offset, "detail": item.detail}), file=sys.stderr)
    return 1 if errors else 0


def cmd_encode(args) -> int:
    import codec

    status = 0
    for lineno, line in enumerate(sys.stdin, start=1):
        line = line.strip()
        if not line:
            continue
        try:
            frame = codec.frame_from_json(json.loads(line))
            print(codec.encode_frame(frame).hex())
        except (ValueError, codec.CodecError, KeyError, TypeError) as exc:
            print(f"line {lineno}: {exc}", file=sys.stderr)
            status = 1
    return status


# --- database commands -------------------------------------------------------------------

def _with_db(cfg, fn):
    """Run ``fn(conn)`` against the node's database (starting the embedded one if needed)."""
    import psycopg

    from .store.embedded import EmbeddedPostgres
    from .store.migrate import migrate

    embedded = None
    dsn = cfg.database.dsn
    if not dsn:
        embedded = EmbeddedPostgres(cfg.resolve(cfg.data_dir) / "pg")
        dsn = embedded.start()
    try:
        with psycopg.connect(dsn) as conn:
            migrate(conn)
            return fn(conn)
    finally:
        if embedded is not None:
            embedded.stop()


def cmd_migrate(args) -> int:
    cfg = _config(args)
    from .store.migrate import current_version

    version = _with_db(cfg, current_version)
    print(json.dumps({"schema_version": version}))
    return 0


def cmd_registry_import(args) -> int:
    cfg = _config(args)
    from . import registry

    rows = registry.read_csv(args.csv)
    n = _with_db(cfg, lambda conn: registry.upsert(conn, rows))
    print(json.dumps({"imported": n}))
    return 0


def cmd_stats(args) -> int:
    cfg = _config(args)
    from .store.queries import stats

    result = _with_db(cfg, stats)
    result["node"] = cfg.node_id
    result["role"] = cfg.role
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


def cmd_hash_password(args) -> int:
    import getpass

    from .accounts import hash_password

    password = args.password if args.password is not None else getpass.getpass("password: ")
    print(hash_password(password))
    return 0


def cmd_hash_token(args) -> int:
    import secrets

    from .api import hash_token

    token = args.token or secrets.token_urlsafe(32)
    if not args.token:
        print(f"token: {token}")
    print(hash_token(token))
    return 0


def cmd_export(args) -> int:
    cfg = _config(args)
    from codec.timefield import parse_iso

    from . import export as export_mod

    try:
        since, until = parse_iso(args.since), parse_iso(args.until)
    except ValueError as exc:
        raise UsageError(f"--from/--to: {exc}") from None
    try:
        export_mod.check(args.vin, since, until, args.format)
    except export_mod.ExportError as exc:
        raise UsageError(str(exc)) from None
    out = open(args.out, "wb") if args.out else sys.stdout.buffer
    try:
        result = _with_db(cfg, lambda conn: export_mod.export(conn, args.vin, since, until, args.format, out.write))
    finally:
        if args.out:
            out.close()
    print(json.dumps({"rows": result["rows"], "bytes": result["bytes"]}), file=sys.stderr)
    return 0


# --- demo, simulators, benchmarks ------------------------------------------------------------

def cmd_demo(args) -> int:
    from . import logs
    from .demo import run_demo

    logs.configure(args.log_level, "logfmt")
    logs.bridge_twisted()
    result = {}

    async def main(reactor):
        from .runtime import settle_gc

        settle_gc()
        result.update(await run_demo(reactor, seconds=args.seconds, vehicles=args.vehicles, piles=args.piles,
                                     data_dir=Path(args.data_dir), protocol=args.protocol, interval=args.interval))

    _react(main)
    _print_summary(result, args.json)
    return 0 if result.get("ok") else 1


def _print_summary(result: dict, as_json: bool) -> None:
    summary = result.get("summary", {})
    if not as_json:
        for key, value in summary.items():
            print(f"{key}: {value}")
    print(json.dumps(summary))


def cmd_simulate_vehicles(args) -> int:
    from . import logs
    from .simulate import run_vehicle_simulator

    logs.configure(args.log_level, "logfmt")
    host, _, port = args.connect.rpartition(":")
    out = {}

    async def main(reactor):
        out.update(await run_vehicle_simulator(
            reactor, host or "127.0.0.1", int(port), count=args.count, seconds=args.seconds, interval=args.interval,
            public_share=args.public_share, registry_out=args.registry_out, protocol=args.protocol, seed=args.seed))

    _react(main)
    print(json.dumps(out))
    return 0


def cmd_simulate_piles(args) -> int:
    from . import logs
    from .simulate_piles import DEMO_SECRETS, HttpOperator, LinkOperator, PileFleet, run_operator

    logs.configure(args.log_level, "logfmt")
    out = {}

    async def main(reactor):
        fleet = PileFleet.make(args.count, seed=args.seed, operator=args.operator, region_code=args.region)
        if args.http:
            from codec.tcec import Secrets

            secrets = DEMO_SECRETS
            if args.secrets_file:
                import yaml

                secrets = Secrets(**{k: str(v) for k, v in yaml.safe_load(Path(args.secrets_file).read_text()).items()})
            client = HttpOperator(reactor, args.http, args.operator, secrets)
        else:
            if not (args.connect and args.user and args.password is not None):
                raise UsageError("give --connect, --user and --password (platform link) or --http URL")
            host, _, port = args.connect.rpartition(":")
            client = LinkOperator(reactor, host or "127.0.0.1", int(port), args.user, args.password, args.operator)
        out.update(await run_operator(reactor, client, fleet, args.seconds, args.interval))

    _react(main)
    print(json.dumps(out))
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench

    if args.batch_interval_ms is not None and args.batch_interval_ms < 1:
        print(f"relay bench {args.what}: --batch-interval-ms must be at least 1", file=sys.stderr)
        return 2
    return run_bench(args.what, args)


# --- the parser -----------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="relay", description="GB/T 32960.3 three-tier relay for NEV and charging-facility "
                                                          "safety monitoring (enterprise, municipal, provincial nodes).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("run", help="run a node in the foreground; SIGTERM/SIGINT stop it gracefully "
                                   "(platform logout, writer flushed)")
    s.add_argument("--config", required=True, help="the node's YAML config (see conf/)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("demo", help="all three tiers with simulated vehicles and piles on the embedded PostgreSQL; "
                                    "ends with a summary")
    s.add_argument("--seconds", type=float, default=20.0, help="how long the simulators send (default 20)")
    s.add_argument("--vehicles", type=int, default=50, help="simulated vehicles (default 50)")
    s.add_argument("--piles", type=int, default=10, help="simulated charging piles (default 10)")
    s.add_argument("--interval", type=float, default=1.0, help="seconds between a vehicle's realtime frames")
    s.add_argument("--protocol", choices=("2016", "2025"), default="2016")
    s.add_argument("--data-dir", default="var/demo", help="where the embedded PostgreSQL lives (default var/demo)")
    s.add_argument("--json", action="store_true", help="print only the summary as one JSON line")
    s.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("simulate", help="simulated vehicle terminals or a charging operator")
    simsub = s.add_subparsers(dest="what", required=True)
    v = simsub.add_parser("vehicles", help="vehicle terminals sending login, realtime frames, logout")
    v.add_argument("--connect", required=True, metavar="HOST:PORT")
    v.add_argument("--count", type=int, default=10)
    v.add_argument("--seconds", type=float, default=10.0)
    v.add_argument("--interval", type=float, default=10.0, help="seconds between realtime frames (default 10)")
    v.add_argument("--public-share", type=float, default=0.6, help="share of public-service vehicles (default 0.6)")
    v.add_argument("--registry-out", help="write the simulated fleet's registry CSV here")
    v.add_argument("--protocol", choices=("2016", "2025"), default="2016")
    v.add_argument("--seed", type=int, default=1)
    v.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    v.set_defaults(func=cmd_simulate_vehicles)

    pl = simsub.add_parser("piles", help="a charging operator: stations, piles, connector status, charging "
                                         "sessions and alarms, over a platform link (0xC1-0xC5) or HTTP (T/CEC 102.4)")
    pl.add_argument("--connect", metavar="HOST:PORT", help="platform listener to log in to (platform link)")
    pl.add_argument("--user", help="platform account")
    pl.add_argument("--password", help="platform account password")
    pl.add_argument("--http", metavar="URL", help="push over HTTP instead, e.g. http://host:8081/evcs/v1.0")
    pl.add_argument("--secrets-file", help="YAML with operator_secret, data_secret, data_iv, sig_secret (HTTP)")
    pl.add_argument("--operator", default="MA01SIM01", help="9-character operator id")
    pl.add_argument("--region", default="320102", help="6-digit region code of the stations")
    pl.add_argument("--count", type=int, default=10, help="piles (4 per station)")
    pl.add_argument("--seconds", type=float, default=10.0)
    pl.add_argument("--interval", type=float, default=5.0, help="seconds between state reports")
    pl.add_argument("--seed", type=int, default=3)
    pl.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    pl.set_defaults(func=cmd_simulate_piles)

    s = sub.add_parser("registry", help="the vehicle registry")
    regsub = s.add_subparsers(dest="what", required=True)
    r = regsub.add_parser("import", help="import (upsert) vehicles from CSV: vin,sector,region_code,owner[,model,plate]")
    r.add_argument("--config", required=True)
    r.add_argument("csv")
    r.set_defaults(func=cmd_registry_import)

    s = sub.add_parser("decode", help="frames -> JSON lines, one object per frame (refusals on stderr)")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--hex", help="frames as a hex string")
    src.add_argument("--file", help="a file of raw frames or hex text; - for standard input")
    src.add_argument("-", dest="stdin", action="store_true", help="read standard input")
    s.add_argument("--protocol", choices=("auto", "2016", "2025"), default="auto")
    s.add_argument("--raw", action="store_true", help="include each frame as hex")
    s.set_defaults(func=cmd_decode)

    s = sub.add_parser("encode", help="JSON lines on stdin -> frames as hex lines")
    s.set_defaults(func=cmd_encode)

    s = sub.add_parser("stats", help="what the node holds: frames by command, vehicles, outbox backlog, audit")
    s.add_argument("--config", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_stats)

    s = sub.add_parser("db", help="database maintenance")
    dbsub = s.add_subparsers(dest="what", required=True)
    m = dbsub.add_parser("migrate", help="apply schema migrations")
    m.add_argument("--config", required=True)
    m.set_defaults(func=cmd_migrate)

    s = sub.add_parser("hash-password", help="make a password hash for accounts[].password_hash")
    s.add_argument("--password", help="(default: ask)")
    s.set_defaults(func=cmd_hash_password)

    s = sub.add_parser("hash-token", help="make a token hash for http.tokens[].token_hash")
    s.add_argument("--token", help="(default: make a new random token and print both)")
    s.set_defaults(func=cmd_hash_token)

    s = sub.add_parser("export", help="vehicle data of a set of vehicles and a period, CSV or JSON lines, to stdout")
    s.add_argument("--config", required=True)
    s.add_argument("--vin", action="append", required=True, help="repeat for several vehicles")
    s.add_argument("--from", dest="since", required=True, help="ISO 8601 time (+08:00 when no offset)")
    s.add_argument("--to", dest="until", required=True)
    s.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    s.add_argument("--out", help="write here instead of standard output")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("bench", help="the project's own benchmarks")
    s.add_argument("what", choices=("codec", "ingest", "e2e", "export", "api", "soak"),
                   help="codec: decode/encode speed; ingest: terminals into one node; e2e: through three tiers; "
                        "export: 20 vehicles x 3 months; api: response times with 100,000 vehicles; "
                        "soak: a long run at the standard's interval, memory and latency over time")
    s.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    s.add_argument("--seconds", type=float, default=None,
                   help="load duration: ingest/e2e 10, soak 300; codec: seconds per measurement")
    s.add_argument("--terminals", type=int, default=None, help="simulated terminals for ingest/e2e")
    s.add_argument("--rate", type=float, default=None,
                   help="frames per second offered for ingest/e2e (default 12000 / 5500: above their 10,000 / "
                        "5,000 targets, since stored / (sending + drain) can only show less than what is offered)")
    s.add_argument("--vehicles", type=int, default=None, help="vehicles for export (20) / api (100000)")
    s.add_argument("--days", type=float, default=None, help="days of data for export (91)")
    s.add_argument("--format", choices=("csv", "jsonl"), default=None, help="export format (csv)")
    s.add_argument("--store", choices=("thread", "process"), default=None,
                   help="e2e: database.store of the three tiers (thread: they share the machine's cores)")
    s.add_argument("--batch-interval-ms", type=int, default=None, metavar="MS",
                   help="ingest/e2e: database.batch_interval_ms of the nodes (default: the config's, 50); "
                        "what it trades: docs/operations.md")
    s.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "stdin", False):
        args.file = "-"
    try:
        return args.func(args)
    except (ConfigError, UsageError) as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 1
    except Exception as exc:  # noqa: BLE001 - one line for the operator, the traceback in debug logs
        from .registry import RegistryError

        if isinstance(exc, RegistryError):
            print(f"relay: {exc}", file=sys.stderr)
            return 2
        print(f"relay: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
