// Every lesion with its track and volume, for scoring the stored tracks against ground truth.
// location as in match_lesions.cypher: x, y, z; or x, y and NaN (only `location_xy`); or null.
MATCH (l:Lesion)
RETURN l.lesion_id AS lesion_id, l.patient_id AS patient_id, l.study_index AS study_index,
       l.series_id AS series_id, l.file_name AS file_name, l.long_axis_mm AS long_axis_mm,
       l.short_axis_mm AS short_axis_mm, l.coarse_type AS coarse_type, l.track_id AS track_id,
       CASE
         WHEN l.location IS NOT NULL THEN l.location
         WHEN l.location_xy IS NOT NULL THEN l.location_xy + [toFloat('NaN')]
       END AS location,
       l.tracking_uid AS tracking_uid
ORDER BY lesion_id
