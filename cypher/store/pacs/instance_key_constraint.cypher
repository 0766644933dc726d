// One node per PACS instance (SR report) the sync has seen, keyed by the hashed SOP Instance UID.
CREATE CONSTRAINT pacs_instance_key IF NOT EXISTS
FOR (i:PacsInstance) REQUIRE i.key IS UNIQUE
