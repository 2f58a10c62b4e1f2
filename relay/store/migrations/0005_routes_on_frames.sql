-- 0005: the outbox becomes a mark on the archived frame.
--
-- The outbox table held a second copy of every frame per upstream, written with the frame
-- and deleted once acknowledged: at an enterprise with two upstreams, each frame cost
-- three copies, five index entries and two deletes (and the vacuum after them). Now the
-- frame's row carries the upstreams it goes to (a bit per upstream, upstream_routes says
-- which) and, only where it differs from the frame as received, what is forwarded
-- (plain text, user-defined information types removed). Each upstream's cursor is a frame
-- id: what waits for it is every frame with its bit and a higher id. Written in the same
-- transaction as the frame, as the outbox was; nothing to delete after delivery.

CREATE TABLE upstream_routes (
    name text     PRIMARY KEY,             -- upstreams[].name of the node's config
    bit  smallint NOT NULL UNIQUE CHECK (bit BETWEEN 0 AND 30)
);

ALTER TABLE frames ADD COLUMN routes integer NOT NULL DEFAULT 0;  -- bit set: goes to that upstream
ALTER TABLE frames ADD COLUMN forward bytea;                       -- what is forwarded, when not raw
CREATE INDEX frames_routed ON frames (id) WHERE routes <> 0;
-- (frames_received indexed the receive time for no query of the node: gone with this)
DROP INDEX frames_received;

-- what waited in the outbox now waits as marks on its frames
INSERT INTO upstream_routes (name, bit)
SELECT name, (row_number() OVER (ORDER BY name) - 1)::smallint
FROM (SELECT upstream AS name FROM outbox UNION SELECT upstream FROM outbox_cursors) AS known;

UPDATE frames f
SET routes = f.routes | waiting.bits,
    forward = CASE WHEN waiting.payload IS DISTINCT FROM f.raw THEN waiting.payload ELSE f.forward END
FROM (SELECT o.vin, o.command, o.collected_at, bit_or(1 << r.bit) AS bits, (array_agg(o.frame))[1] AS payload
      FROM outbox o
      JOIN upstream_routes r ON r.name = o.upstream
      LEFT JOIN outbox_cursors c ON c.upstream = o.upstream
      WHERE o.id > coalesce(c.last_id, 0)
      GROUP BY o.vin, o.command, o.collected_at) AS waiting
WHERE f.vin = waiting.vin AND f.command = waiting.command AND f.collected_at = waiting.collected_at
  AND f.response = 254;

-- cursors were outbox ids: now the frame id before the first frame waiting for the upstream
UPDATE outbox_cursors c
SET last_id = coalesce((SELECT min(f.id) - 1 FROM frames f JOIN upstream_routes r ON r.name = c.upstream
                        WHERE f.routes <> 0 AND f.routes & (1 << r.bit) <> 0),
                       (SELECT coalesce(max(id), 0) FROM frames));

DROP TABLE outbox;

-- what waits for each upstream, as the outbox table showed it (for operators' queries)
CREATE VIEW outbox AS
SELECT f.id, r.name AS upstream, f.vin, f.command, f.collected_at, f.received_at,
       coalesce(f.forward, f.raw) AS frame
FROM upstream_routes r
JOIN frames f ON f.routes <> 0 AND f.routes & (1 << r.bit) <> 0
WHERE f.id > coalesce((SELECT c.last_id FROM outbox_cursors c WHERE c.upstream = r.name), 0);
