// Description: A patient's lesion tracks (one physical lesion measured over time): measurements,
// studies, first and last study, long axis in the first and last study (mm; the largest where
// several series of a study measured it) and the change between them (mm and % of the first), the
// type (the label, else the predicted type) and the lesion ids in time order.
// @param patient_id STRING  the patient id as in DeepLesion file names, e.g. 000002
// Example: lesionkg query patient_tracks --param patient_id=000002
MATCH (:Patient {patient_id: $patient_id})-[:HAS_STUDY]->(s:Study)-[:HAS_LESION]->(l:Lesion)
WHERE l.track_id IS NOT NULL
OPTIONAL MATCH (pt:LesionType {code: l.predicted_type})
WITH l, s.study_index AS study_index, pt.name AS predicted_name
ORDER BY study_index, l.series_id, l.lesion_id
WITH l.track_id AS track_id, study_index, max(l.long_axis_mm) AS mm,
     collect(l.lesion_id) AS ids, collect(l.coarse_type_name) AS labels,
     collect(predicted_name) AS predicted
ORDER BY track_id, study_index
WITH track_id, collect({study: study_index, mm: mm}) AS per_study,
     reduce(acc = [], x IN collect(ids) | acc + x) AS lesion_ids,
     reduce(acc = [], x IN collect(labels) | acc + x) AS labels,
     reduce(acc = [], x IN collect(predicted) | acc + x) AS predicted
WITH track_id, per_study, lesion_ids, head(labels) AS label, head(predicted) AS predicted_name,
     per_study[0] AS first, per_study[-1] AS last
RETURN track_id, coalesce(label, predicted_name, 'unlabelled') AS type,
       label IS NULL AND predicted_name IS NOT NULL AS type_predicted,
       size(lesion_ids) AS measurements, size(per_study) AS studies,
       first.study AS first_study_index, last.study AS last_study_index,
       first.mm AS first_long_axis_mm, last.mm AS last_long_axis_mm,
       last.mm - first.mm AS change_mm,
       CASE WHEN first.mm > 0 THEN 100.0 * (last.mm - first.mm) / first.mm END AS change_pct,
       lesion_ids
ORDER BY first_study_index, first_long_axis_mm DESC, track_id
