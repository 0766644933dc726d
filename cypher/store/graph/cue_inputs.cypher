// The metadata the cues space is computed from (see lesionkg.cues), for every lesion.
MATCH (l:Lesion)
RETURN l.lesion_id AS lesion_id, l.location AS location, l.long_axis_mm AS long_axis_mm,
       l.short_axis_mm AS short_axis_mm, l.window AS window
ORDER BY lesion_id
