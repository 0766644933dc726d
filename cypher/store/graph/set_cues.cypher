// $rows: LIST<MAP{lesion_id: STRING, cues: LIST<FLOAT>}>; $version: the cue definition's version.
UNWIND $rows AS row
MATCH (l:Lesion {lesion_id: row.lesion_id})
SET l.cues = row.cues, l.cues_version = $version
