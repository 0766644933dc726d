// Description: How many lesions and patients each coarse type has, with the median long axis (mm);
// unlabelled lesions (DeepLesion train rows) form their own row.
// Example: lesionkg query type_distribution
MATCH (l:Lesion)
WITH l.coarse_type AS code, l.coarse_type_name AS name, count(*) AS lesions,
     count(DISTINCT l.patient_id) AS patients,
     percentileCont(l.long_axis_mm, 0.5) AS median_long_axis_mm
RETURN code, coalesce(name, 'unlabelled') AS name, lesions, patients, median_long_axis_mm
ORDER BY lesions DESC, code
