// $rows: LIST<MAP{study_id, patient_id: STRING, study_datetime: STRING|null, study_index:
// INTEGER}>. The patient is written first in the same transaction.
UNWIND $rows AS row
MATCH (p:Patient {patient_id: row.patient_id})
MERGE (s:Study {study_id: row.study_id})
SET s.patient_id = row.patient_id,
    s.study_index = row.study_index,
    s.study_datetime = row.study_datetime
MERGE (p)-[:HAS_STUDY]->(s)
