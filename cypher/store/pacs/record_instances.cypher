// Record what became of instances: imported, duplicate, quarantined or pending (with a reason that
// names no identifier). first_seen is kept from the first sync that saw the instance.
// $url: STRING, $rows: LIST<MAP{key, status, reason: STRING, lesions: INTEGER}>
UNWIND $rows AS r
MERGE (i:PacsInstance {key: r.key})
ON CREATE SET i.first_seen = datetime()
SET i.source = $url, i.status = r.status, i.reason = r.reason, i.lesions = r.lesions,
    i.updated_at = datetime()
RETURN count(i) AS recorded
