// The cohort filter's lesions (inserted twice into cohort.cypher). $type: a coarse type code
// 1..8 or null (any); $type_source: given (the label), predicted (link's kNN vote) or either (the
// label, else the prediction); sizes in mm; the box is normalised body location 0..1 (z from head
// to feet), used when $use_box; $min_studies: the patient's studies, counted only when above 1.
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
  AND CASE WHEN $min_studies <= 1 THEN true
           ELSE COUNT { MATCH (s:Study) WHERE s.patient_id = l.patient_id } >= $min_studies END
