// Description: Lesions of one coarse type whose long axis lies in a size range, largest first.
// @param coarse_type INTEGER  1 bone, 2 abdomen, 3 mediastinum, 4 liver, 5 lung, 6 kidney, 7 soft tissue, 8 pelvis
// @param min_mm FLOAT = 0  smallest long axis, mm (inclusive)
// @param max_mm FLOAT = 10000  largest long axis, mm (inclusive)
// @param limit INTEGER = 100  at most this many lesions
// Example: lesionkg query lesions_by_type_and_size --param coarse_type=4 --param min_mm=50
MATCH (l:Lesion)
WHERE l.coarse_type = $coarse_type AND $min_mm <= l.long_axis_mm <= $max_mm
RETURN l.lesion_id AS lesion_id, l.patient_id AS patient_id, l.study_index AS study_index,
       l.file_name AS file_name, l.long_axis_mm AS long_axis_mm, l.short_axis_mm AS short_axis_mm
ORDER BY long_axis_mm DESC, lesion_id
LIMIT $limit
