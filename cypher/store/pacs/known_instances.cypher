// What the sync already knows of these instances (hashed SOP Instance UIDs).
// $keys: LIST<STRING>
UNWIND $keys AS key
MATCH (i:PacsInstance {key: key})
RETURN i.key AS key, i.status AS status, i.first_seen AS first_seen
