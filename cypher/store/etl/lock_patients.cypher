// The first statement of an import's write transaction: takes the write lock of every patient
// the batch touches, in the order of $rows (sorted by patient_id, so two imports never wait on
// each other in a cycle), before anything of those patients is read. A concurrent import of the
// same patients waits here until this one commits, then reads what it wrote: study order,
// duplicates and tracks come out as in a serial run. New patients are created (the unique
// constraint makes a concurrent creator wait); a known patient's values are not changed here.
// $rows: LIST<MAP{patient_id: STRING, sex: STRING|null, dataset: STRING}>.
UNWIND $rows AS row
MERGE (p:Patient {patient_id: row.patient_id})
  ON CREATE SET p.sex = row.sex, p.dataset = row.dataset
SET p._lock = true
REMOVE p._lock
RETURN count(p) AS locked
