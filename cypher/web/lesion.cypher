// One lesion with its patient, study, predicted type's name and its track (every measurement
// with the same track_id, in study order); no row when the lesion is unknown. The triplet
// embedding (1408 numbers) is left out: the page shows its length and model instead.
MATCH (p:Patient)-[:HAS_STUDY]->(s:Study)-[:HAS_LESION]->(l:Lesion {lesion_id: $lesion_id})
OPTIONAL MATCH (pt:LesionType {code: l.predicted_type})
OPTIONAL MATCH (m:Lesion {patient_id: l.patient_id})
  WHERE l.track_id IS NOT NULL AND m.track_id = l.track_id
WITH p, s, l, pt, m
ORDER BY m.study_index, m.series_id, m.lesion_id
RETURN l {.*, embedding: null} AS lesion, p {.*} AS patient, s {.*} AS study,
       pt.name AS predicted_name,
       collect(m {.lesion_id, .study_index, .series_id, .long_axis_mm, .short_axis_mm})
         AS track
