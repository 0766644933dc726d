// What matching needs of the lesions of the patients $patient_ids (LIST<STRING>), or of every
// patient (null). Patients without lesions are simply absent.
// Two branches, because one `$patient_ids IS NULL OR l.patient_id IN $patient_ids` filter is
// planned as a scan of every lesion even for a short list; so a list seeks the patient_id index,
// and only null scans every lesion.
// Only a given type counts: a predicted type is a vote of nearby lesions' types, i.e. mostly the
// location again, which the cost already has (using it lowered recall on the synthetic truth from
// 0.976 to 0.952). The embedding is the triplet space's, if any.
// location: the normalised x, y, z; or x, y and NaN when z is unknown (a PACS bookmark without a
// body-part regression model has only `location_xy`, since a Neo4j list cannot hold null); or
// null (no image). series_id is an INTEGER (DeepLesion) or a STRING (PACS); tracking_uid is the
// reader's pseudonymised lesion tracking UID, or null.
CALL () {
  UNWIND $patient_ids AS pid
  WITH DISTINCT pid
  MATCH (l:Lesion {patient_id: pid})
  RETURN l
  UNION ALL
  WITH $patient_ids AS ids
  WHERE ids IS NULL
  MATCH (l:Lesion)
  RETURN l
}
RETURN l.patient_id AS patient_id, l.lesion_id AS lesion_id, l.study_index AS study_index,
       l.series_id AS series_id,
       CASE
         WHEN l.location IS NOT NULL THEN l.location
         WHEN l.location_xy IS NOT NULL THEN l.location_xy + [toFloat('NaN')]
       END AS location,
       l.long_axis_mm AS long_axis_mm, l.coarse_type AS coarse_type,
       CASE WHEN l.embedding_space = 'triplet' THEN l.embedding END AS embedding,
       l.tracking_uid AS tracking_uid
ORDER BY patient_id, lesion_id
