// Description: Lesions whose normalised body location [x, y, z] lies in a box (0..1 on each axis;
// z runs from head to feet as in DeepLesion), ordered by z.
// @param x_min FLOAT = 0  left edge (patient's right side is x = 0)
// @param x_max FLOAT = 1  right edge
// @param y_min FLOAT = 0  front edge (anterior)
// @param y_max FLOAT = 1  back edge (posterior)
// @param z_min FLOAT = 0  top (cranial)
// @param z_max FLOAT = 1  bottom (caudal)
// @param limit INTEGER = 100  at most this many lesions
// Example: lesionkg query lesions_in_box --param z_min=0.4 --param z_max=0.6 --param x_max=0.5
MATCH (l:Lesion)
WHERE $x_min <= l.location[0] <= $x_max
  AND $y_min <= l.location[1] <= $y_max
  AND $z_min <= l.location[2] <= $z_max
RETURN l.lesion_id AS lesion_id, l.patient_id AS patient_id,
       coalesce(l.coarse_type_name, 'unlabelled') AS type,
       l.location AS location, l.long_axis_mm AS long_axis_mm
ORDER BY l.location[2], lesion_id
LIMIT $limit
