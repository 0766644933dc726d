// Lesions whose image was found ($found) but whose location source says there was none
// ($legacy, written by earlier imports for a measurement without coordinates on its image) get
// the source an import writes now ($source): image_status and location_source never contradict.
// Runs once per graph: the graph's key node (made by etl/migrate_dates_begin, which runs first)
// is marked `location_sources_fixed`, so later imports skip the scan of every lesion. A graph
// already marked gives no key row, hence no lesion and a count of 0.
MATCH (k:PseudonymKey {scope: 'graph'})
WHERE k.location_sources_fixed IS NULL
SET k.location_sources_fixed = true
WITH k
OPTIONAL MATCH (l:Lesion)
WHERE l.image_status = $found AND l.location_source = $legacy
SET l.location_source = $source
RETURN count(l) AS fixed
