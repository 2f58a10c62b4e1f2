"""Faults injected into a test database."""

from __future__ import annotations

import psycopg


def refuse_realtime_of(dsn: str, vin: str) -> None:
    """A trigger that makes the database refuse every realtime row of ``vin`` (the statement
    fails with ``test: <vin> refused``), so that the writer must isolate and refuse that item."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"""
            CREATE FUNCTION refuse_vin() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.vin = '{vin}' THEN RAISE EXCEPTION 'test: % refused', NEW.vin; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_vin BEFORE INSERT ON realtime FOR EACH ROW EXECUTE FUNCTION refuse_vin();""")
