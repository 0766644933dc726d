// A patient's subgraph for the graph view: its studies and lesions, FOLLOWED_BY edges between
// them and SIMILAR_TO edges of $space up to rank $max_rank into other patients' lesions.
MATCH (:Patient {patient_id: $patient_id})-[:HAS_STUDY]->(s:Study)-[:HAS_LESION]->(l:Lesion)
WITH collect(DISTINCT s {.study_id, .study_index}) AS studies,
     collect(l) AS nodes
CALL (nodes) {
  UNWIND nodes AS a
  MATCH (a)-[:FOLLOWED_BY]->(b:Lesion)
  RETURN collect({source: a.lesion_id, target: b.lesion_id}) AS followed
}
CALL (nodes) {
  UNWIND nodes AS a
  MATCH (a)-[r:SIMILAR_TO {space: $space}]->(b:Lesion)
  WHERE r.rank <= $max_rank AND b.patient_id <> a.patient_id
  RETURN collect({source: a.lesion_id, target: b.lesion_id, rank: r.rank,
                  patient_id: b.patient_id, code: coalesce(b.coarse_type, b.predicted_type),
                  long_axis_mm: b.long_axis_mm}) AS similar
}
RETURN studies,
       [l IN nodes | l {.lesion_id, .study_id, .study_index, .track_id, .coarse_type,
                        .predicted_type, .long_axis_mm}] AS lesions,
       followed, similar
