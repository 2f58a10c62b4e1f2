-- 0007: the newest frame id marked for any upstream, moved on by every batch that marks
-- frames, in its transaction and under the outbox lock (so in any snapshot every marked
-- frame up to it is visible). A forwarder that has read every frame for its upstream up to
-- this id takes the next batch's frames from the writer that committed them, instead of
-- reading them back, as long as the batch moved the head on from exactly there (nobody
-- else marked frames in between).
CREATE TABLE outbox_head (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    last_id bigint  NOT NULL
);
INSERT INTO outbox_head (last_id) SELECT coalesce(max(id), 0) FROM frames WHERE routes <> 0;
