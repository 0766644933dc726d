// Lesions whose image was found ($found) but whose location source says there was none
// ($legacy, written by earlier imports for a measurement without coordinates on its image) get
// the source an import writes now ($source): image_status and location_source never contradict.
// Matches nothing once done, so every import may run it.
MATCH (l:Lesion)
WHERE l.image_status = $found AND l.location_source = $legacy
SET l.location_source = $source
RETURN count(l) AS fixed
