// Every lesion with its track and volume, for scoring the stored tracks against ground truth.
MATCH (l:Lesion)
RETURN l.lesion_id AS lesion_id, l.patient_id AS patient_id, l.study_index AS study_index,
       l.series_id AS series_id, l.file_name AS file_name, l.long_axis_mm AS long_axis_mm,
       l.short_axis_mm AS short_axis_mm, l.coarse_type AS coarse_type, l.track_id AS track_id,
       l.location AS location
ORDER BY lesion_id
