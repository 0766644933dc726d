// How many instances of one source are in each state.
// $url: STRING
MATCH (i:PacsInstance {source: $url})
RETURN i.status AS status, count(*) AS n
