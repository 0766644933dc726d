// The cohort filter: how many lesions match, and one page of them, largest first. Each
// "// <cohort_filter>" line is replaced by cohort_filter.cypher (lesionkg.web.lookups), so both
// halves see the same lesions; counting and a top-k page are cheaper than sorting every match.
CALL () {
// <cohort_filter>
  RETURN count(l) AS total
}
CALL () {
// <cohort_filter>
  WITH l
  ORDER BY l.long_axis_mm DESC, l.lesion_id
  SKIP $skip
  LIMIT $limit
  RETURN collect(l {.lesion_id, .patient_id, .study_index, .coarse_type, .coarse_type_name,
                    .predicted_type, .long_axis_mm, .short_axis_mm, .location, .dataset,
                    .track_id}) AS page
}
RETURN total, page
