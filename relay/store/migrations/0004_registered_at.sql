-- 0004: when a vehicle entered the registry, kept apart from updated_at (which a re-import
-- of unchanged rows must not move): a vehicle never seen is offline since registration.
ALTER TABLE vehicles ADD COLUMN registered_at timestamptz;
UPDATE vehicles SET registered_at = updated_at;
ALTER TABLE vehicles ALTER COLUMN registered_at SET NOT NULL;
ALTER TABLE vehicles ALTER COLUMN registered_at SET DEFAULT now();
