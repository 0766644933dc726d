// Which of $lesion_ids (LIST<STRING>) are already in the graph: a re-imported bookmark keeps its
// id, so these are duplicates.
UNWIND $lesion_ids AS id
MATCH (l:Lesion {lesion_id: id})
RETURN l.lesion_id AS lesion_id
