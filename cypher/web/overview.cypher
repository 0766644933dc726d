// The overview page's counts: nodes by label and relationships by type (count store lookups),
// tracks, and lesions grouped by dataset, given type, predicted type and long-axis bin ($bin_mm
// wide), which the page sums into its charts.
MATCH (p:Patient)
WITH count(p) AS patients
MATCH (s:Study)
WITH patients, count(s) AS studies
OPTIONAL MATCH ()-[f:FOLLOWED_BY]->()
WITH patients, studies, count(f) AS followed_by
OPTIONAL MATCH ()-[r:SIMILAR_TO]->()
WITH patients, studies, followed_by, count(r) AS similar_to
CALL () {
  MATCH (l:Lesion)
  WITH l.dataset AS dataset, l.coarse_type AS code, l.predicted_type AS predicted,
       toInteger(floor(l.long_axis_mm / $bin_mm)) AS bin, count(*) AS lesions
  RETURN collect({dataset: dataset, code: code, predicted: predicted, bin: bin,
                  lesions: lesions}) AS groups
}
CALL () {
  MATCH (l:Lesion) WHERE l.track_id IS NOT NULL
  RETURN count(DISTINCT l.track_id) AS tracks
}
RETURN patients, studies, followed_by, similar_to, tracks, groups
