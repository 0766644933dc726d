// Description: Every property of one lesion, with its patient's sex and age at the study.
// @param lesion_id STRING  e.g. DL-0123456789abcdef (see `lesionkg query patient_timeline`)
// Example: lesionkg query lesion --param lesion_id=DL-0123456789abcdef --format json
MATCH (p:Patient)-[:HAS_STUDY]->(s:Study)-[:HAS_LESION]->(l:Lesion {lesion_id: $lesion_id})
RETURN l {.*} AS lesion, p.sex AS sex, s.patient_age AS patient_age
