// The demo replaces its own earlier SYNTHETIC cohort: patients labelled synthetic whose 6-digit
// id is $first_patient or above (real DeepLesion ids stay below 004428), with their studies and
// lesions. Nothing else in the database is touched.
MATCH (p:Patient {dataset: 'synthetic'})
WHERE p.patient_id >= $first_patient
OPTIONAL MATCH (p)-[:HAS_STUDY]->(s:Study)
OPTIONAL MATCH (s)-[:HAS_LESION]->(l:Lesion)
DETACH DELETE l, s, p
