// The coarse lesion types as nodes; $rows: LIST<MAP{code: INTEGER, name: STRING}>.
UNWIND $rows AS row
MERGE (t:LesionType {code: row.code})
SET t.name = row.name
