// Records the pseudonymisation key's id ($key_id) with the first PACS import, so that a later
// import with another key is refused instead of splitting patients in two.
MERGE (:PseudonymKey {key_id: $key_id})
