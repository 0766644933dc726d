// Every lesion with what the embedding pipeline needs: key slice name or stored image path, box
// (x1, y1, x2, y2 pixels) and pixel spacing (mm). Ordered so runs are reproducible.
MATCH (l:Lesion)
RETURN l.lesion_id AS lesion_id, l.file_name AS file_name, l.image_path AS image_path,
       l.bbox AS bbox, l.spacing_mm AS spacing_mm
ORDER BY lesion_id
