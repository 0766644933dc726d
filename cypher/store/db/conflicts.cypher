// The values a re-import would change: a known coarse type, sex or age that the new rows give
// differently (a value the graph does not know yet is no conflict). Reads only.
// $lesions: LIST<MAP{id: STRING, value: INTEGER|null}> (coarse_type),
// $patients: LIST<MAP{id: STRING, value: STRING|null}> (sex),
// $studies: LIST<MAP{id: STRING, value: FLOAT|null}> (patient_age).
UNWIND $lesions AS row
MATCH (l:Lesion {lesion_id: row.id})
WHERE row.value IS NOT NULL AND l.coarse_type IS NOT NULL AND l.coarse_type <> row.value
RETURN 'Lesion' AS label, row.id AS id, 'coarse_type' AS field, l.coarse_type AS old,
       row.value AS new
UNION ALL
UNWIND $patients AS row
MATCH (p:Patient {patient_id: row.id})
WHERE row.value IS NOT NULL AND p.sex IS NOT NULL AND p.sex <> row.value
RETURN 'Patient' AS label, row.id AS id, 'sex' AS field, p.sex AS old, row.value AS new
UNION ALL
UNWIND $studies AS row
MATCH (s:Study {study_id: row.id})
WHERE row.value IS NOT NULL AND s.patient_age IS NOT NULL AND s.patient_age <> row.value
RETURN 'Study' AS label, row.id AS id, 'patient_age' AS field, s.patient_age AS old,
       row.value AS new
