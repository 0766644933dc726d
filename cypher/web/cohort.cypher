// The cohort filter: lesions matching every given condition, largest first, one page of them and
// how many matched. $type: a coarse type code 1..8 or null (any); $type_source: given (the label),
// predicted (link's kNN vote) or either (the label, else the prediction); sizes in mm; the box is
// normalised body location 0..1 (z from head to feet); $min_studies: the patient's studies.
MATCH (l:Lesion)
WHERE $min_mm <= l.long_axis_mm <= $max_mm
  AND ($dataset IS NULL OR l.dataset = $dataset)
  AND ($type IS NULL
       OR ($type_source = 'given' AND l.coarse_type = $type)
       OR ($type_source = 'predicted' AND l.predicted_type = $type)
       OR ($type_source = 'either' AND coalesce(l.coarse_type, l.predicted_type) = $type))
  AND (NOT $use_box
       OR ($x_min <= l.location[0] <= $x_max AND $y_min <= l.location[1] <= $y_max
           AND $z_min <= l.location[2] <= $z_max))
  AND ($min_studies <= 1
       OR COUNT { MATCH (s:Study) WHERE s.patient_id = l.patient_id } >= $min_studies)
WITH l
ORDER BY l.long_axis_mm DESC, l.lesion_id
WITH collect(l) AS hits
RETURN size(hits) AS total,
       [x IN hits[$skip..($skip + $limit)] | x {.lesion_id, .patient_id, .study_index,
        .coarse_type, .coarse_type_name, .predicted_type, .long_axis_mm, .short_axis_mm,
        .location, .dataset, .track_id}] AS page
