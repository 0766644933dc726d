// Node and relationship counts by label / type, for summaries and `lesionkg db stats`.
CALL () {
  MATCH (p:Patient) RETURN 'Patient' AS kind, count(p) AS n
  UNION ALL MATCH (s:Study) RETURN 'Study' AS kind, count(s) AS n
  UNION ALL MATCH (l:Lesion) RETURN 'Lesion' AS kind, count(l) AS n
  UNION ALL MATCH (t:LesionType) RETURN 'LesionType' AS kind, count(t) AS n
  UNION ALL MATCH ()-[r:HAS_STUDY]->() RETURN 'HAS_STUDY' AS kind, count(r) AS n
  UNION ALL MATCH ()-[r:HAS_LESION]->() RETURN 'HAS_LESION' AS kind, count(r) AS n
  UNION ALL MATCH ()-[r:OF_TYPE]->() RETURN 'OF_TYPE' AS kind, count(r) AS n
  UNION ALL MATCH ()-[r:FOLLOWED_BY]->() RETURN 'FOLLOWED_BY' AS kind, count(r) AS n
  UNION ALL MATCH ()-[r:SIMILAR_TO]->() RETURN 'SIMILAR_TO' AS kind, count(r) AS n
}
RETURN kind, n
