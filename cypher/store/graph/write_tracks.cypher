// Replace the tracks of a batch of patients in one transaction.
// $patients: LIST<MAP{patient_id: STRING,
//   tracks: LIST<MAP{lesion_id, track_id: STRING}>,
//   links: LIST<MAP{source, target: STRING, score: FLOAT, same_study: BOOLEAN, by: STRING}>}>
// (lesionkg.tracking.track_rows builds it; `by`: 'reader' for a link of two lesions the reader gave
// one tracking UID, 'matching' for an inferred one).
// Every FOLLOWED_BY edge among the patient's lesions goes first, so a re-run never duplicates
// an edge or keeps one a better match replaced.
UNWIND $patients AS p
CALL (p) {
  // The hint keeps the planner from scanning every FOLLOWED_BY edge once per patient.
  MATCH (a:Lesion {patient_id: p.patient_id})-[old:FOLLOWED_BY]->()
  USING INDEX a:Lesion(patient_id)
  DELETE old
}
CALL (p) {
  UNWIND p.tracks AS t
  MATCH (l:Lesion {lesion_id: t.lesion_id})
  SET l.track_id = t.track_id
}
CALL (p) {
  UNWIND p.links AS e
  MATCH (a:Lesion {lesion_id: e.source}), (b:Lesion {lesion_id: e.target})
  CREATE (a)-[:FOLLOWED_BY {score: e.score, same_study: e.same_study, by: e.by}]->(b)
}
RETURN count(p) AS patients
