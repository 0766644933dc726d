// $rows: LIST<MAP{patient_id: STRING, sex: STRING|null, dataset: STRING}>.
// A missing sex never erases a known one.
UNWIND $rows AS row
MERGE (p:Patient {patient_id: row.patient_id})
SET p.sex = coalesce(row.sex, p.sex),
    p.dataset = row.dataset
