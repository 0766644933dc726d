// A patient's studies re-numbered by study time (a study dated before those already in the
// graph can arrive later). $rows: LIST<MAP{study_id: STRING, study_index: INTEGER,
// study_datetime: STRING|null}>; a study without a time gets the one given now. The study's
// lesions carry the index too (matching orders volumes by it).
UNWIND $rows AS row
MATCH (s:Study {study_id: row.study_id})
SET s.study_index = row.study_index,
    s.study_datetime = coalesce(s.study_datetime, row.study_datetime)
WITH s, row
OPTIONAL MATCH (s)-[:HAS_LESION]->(l:Lesion)
SET l.study_index = row.study_index
