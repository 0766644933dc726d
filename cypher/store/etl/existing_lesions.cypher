// Which of $lesion_ids (LIST<STRING>) are already in the graph, with the values a re-import may
// not change silently: a re-imported bookmark keeps its id, so these are duplicates, or
// conflicts when a checked value differs.
UNWIND $lesion_ids AS id
MATCH (l:Lesion {lesion_id: id})
RETURN l.lesion_id AS lesion_id, l.coarse_type AS coarse_type, l.location AS location,
       l.location_source AS location_source, l.window AS window, l.series_id AS series_id
