// Description: Patients similar to a patient through the SIMILAR_TO edges of one embedding space
// that lead from the patient's lesions to other patients' lesions. score: for each of the
// patient's tracks (a lesion followed over time; a lesion without track_id is a track of its own)
// the best reciprocal rank 1/rank of its lesions' edges into the other patient, summed over the
// tracks; so a lesion measured in five studies counts once, and ranks (unlike distances) compare
// across lesions and spaces. matched_tracks / matched_lesions: how many of the patient's tracks /
// lesions have an edge into the other patient; edges: how many edges; best_rank: the smallest rank.
// @param patient_id STRING  the patient id as in DeepLesion file names, e.g. 000002
// @param space STRING = cues  the edges' space: cues or triplet
// @param k INTEGER = 10  at most this many patients
// Example: lesionkg query similar_patients --param patient_id=000002 --param space=cues --param k=5
MATCH (:Patient {patient_id: $patient_id})-[:HAS_STUDY]->(:Study)-[:HAS_LESION]->(a:Lesion)
      -[r:SIMILAR_TO {space: $space}]->(b:Lesion)
WHERE b.patient_id <> $patient_id
WITH b.patient_id AS other, coalesce(a.track_id, a.lesion_id) AS track,
     min(r.rank) AS best_rank, count(DISTINCT a) AS lesions, count(r) AS edges
WITH other, sum(1.0 / best_rank) AS score, count(track) AS matched_tracks,
     sum(lesions) AS matched_lesions, sum(edges) AS edges, min(best_rank) AS best_rank
RETURN other AS patient_id, score, matched_tracks, matched_lesions, edges, best_rank
ORDER BY score DESC, matched_tracks DESC, best_rank, patient_id
LIMIT $k
