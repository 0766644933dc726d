// Advance a source's cursor after the reports it covers are committed (or pending, or quarantined).
// $url: STRING, $cursor: STRING (YYYYMMDD) or null (search everything next time)
MERGE (s:PacsSource {url: $url})
SET s.cursor = $cursor, s.synced_at = datetime()
RETURN s.cursor AS cursor
