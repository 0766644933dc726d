// Writes the shifted study dates ($rows: LIST<MAP{study_id: STRING, study_datetime: STRING}>)
// and marks the graph's key node `dates_shifted`, in the migration's one transaction.
UNWIND $rows AS row
MATCH (s:Study {study_id: row.study_id})
SET s.study_datetime = row.study_datetime
WITH count(*) AS shifted
MATCH (k:PseudonymKey {scope: 'graph'})
SET k.dates_shifted = true
RETURN shifted
