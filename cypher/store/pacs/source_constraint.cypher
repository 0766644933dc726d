// One node per DICOMweb source (its base URL), holding the sync cursor.
CREATE CONSTRAINT pacs_source_url IF NOT EXISTS
FOR (s:PacsSource) REQUIRE s.url IS UNIQUE
