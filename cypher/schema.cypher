// LesionKG graph schema. Applied before every write (`lesionkg db init` runs it alone).
// Every statement is idempotent (IF NOT EXISTS), so applying it again changes nothing.

CREATE CONSTRAINT patient_id_unique IF NOT EXISTS
FOR (p:Patient) REQUIRE p.patient_id IS UNIQUE;

CREATE CONSTRAINT study_id_unique IF NOT EXISTS
FOR (s:Study) REQUIRE s.study_id IS UNIQUE;

CREATE CONSTRAINT lesion_id_unique IF NOT EXISTS
FOR (l:Lesion) REQUIRE l.lesion_id IS UNIQUE;

CREATE CONSTRAINT lesion_type_code_unique IF NOT EXISTS
FOR (t:LesionType) REQUIRE t.code IS UNIQUE;

// One node per embedding space: imports lock it to keep SIMILAR_TO exact (graph/lock_space).
CREATE CONSTRAINT embedding_space_name_unique IF NOT EXISTS
FOR (s:EmbeddingSpace) REQUIRE s.name IS UNIQUE;

// One pseudonymisation key per graph (etl/record_key merges the node on scope = 'graph'): of two
// first imports with different keys, the second is refused.
CREATE CONSTRAINT pseudonym_key_scope_unique IF NOT EXISTS
FOR (k:PseudonymKey) REQUIRE k.scope IS UNIQUE;

// lesions_by_type_and_size, type_distribution
CREATE INDEX lesion_coarse_type IF NOT EXISTS FOR (l:Lesion) ON (l.coarse_type);

// lesions_by_type_and_size, largest_lesions_per_patient (range scans on size)
CREATE INDEX lesion_long_axis_mm IF NOT EXISTS FOR (l:Lesion) ON (l.long_axis_mm);

// lookups by the DeepLesion key-slice name (evaluation pairs, image joins)
CREATE INDEX lesion_file_name IF NOT EXISTS FOR (l:Lesion) ON (l.file_name);

// per-patient scans that do not start from the Patient node (matching, tracks)
CREATE INDEX lesion_patient_id IF NOT EXISTS FOR (l:Lesion) ON (l.patient_id);

// the ETL re-numbers a patient's studies by study time when a new study arrives
CREATE INDEX study_patient_id IF NOT EXISTS FOR (s:Study) ON (s.patient_id);

// In-Cypher nearest neighbours (db.index.vector.queryNodes) of the triplet network's embedding
// (lesionkg.model.network.EMBEDDING_DIM); scores are (1 + cosine) / 2.
CREATE VECTOR INDEX lesion_triplet IF NOT EXISTS
FOR (l:Lesion) ON l.embedding
OPTIONS {indexConfig: {`vector.dimensions`: 1408, `vector.similarity_function`: 'cosine'}};

// The same for the metadata cues space (lesionkg.cues.CUE_DIM = 6); scores are
// 1 / (1 + squared euclidean distance). Quantization is off: at 6 dimensions it merges distances
// that differ (a vector 3 away could score like one 2.5 away).
CREATE VECTOR INDEX lesion_cues IF NOT EXISTS
FOR (l:Lesion) ON l.cues
OPTIONS {indexConfig: {`vector.dimensions`: 6, `vector.similarity_function`: 'euclidean',
                       `vector.quantization.enabled`: false}};
