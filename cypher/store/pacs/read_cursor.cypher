// The sync cursor of one source: the StudyDate (YYYYMMDD) from which the next sync searches.
// $url: STRING
OPTIONAL MATCH (s:PacsSource {url: $url})
RETURN s.cursor AS cursor, s.synced_at AS synced_at
