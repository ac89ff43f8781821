//! What the migrations produce, in one place: the one description of the
//! schema. [`catalog`] turns it into a [`Catalog`], which `verify` and the
//! tests diff against a snapshot of the live database.
//!
//! Definitions are written the way PostgreSQL prints them back
//! (`pg_get_indexdef`, `pg_get_constraintdef`, `pg_get_triggerdef`,
//! `format_type`, `pg_get_expr`), without the schema qualifier. When a
//! migration changes the schema, update this file too: the tests diff a
//! freshly migrated database against it and fail until it matches.

use crate::catalog::{Catalog, Column, Definition};

/// The pgvector extension.
pub const PGVECTOR: &str = "vector";
/// Oldest pgvector with HNSW indexes (`idx_resume_chunks_embedding`).
pub const PGVECTOR_MIN_VERSION: &str = "0.5.0";

/// A column: name, `format_type()` type, `NOT NULL`, default expression.
pub type ColumnSpec = (&'static str, &'static str, bool, Option<&'static str>);

/// A table and all of its columns, in order.
#[derive(Clone, Copy, Debug)]
pub struct TableSpec {
    /// Table name.
    pub name: &'static str,
    /// Every column, in physical order. Extra columns count as a difference.
    pub columns: &'static [ColumnSpec],
}

/// A named object of a table with its definition (index, constraint,
/// trigger).
#[derive(Clone, Copy, Debug)]
pub struct ObjectSpec {
    /// The table it belongs to.
    pub table: &'static str,
    /// Its name.
    pub name: &'static str,
    /// Its definition as PostgreSQL prints it, schema qualifier removed.
    pub definition: &'static str,
}

const NN: bool = true;
const NULL: bool = false;
const TSTZ: &str = "timestamp with time zone";
const UUID_PK: ColumnSpec = ("id", "uuid", NN, Some("gen_random_uuid()"));
const CREATED_AT: ColumnSpec = ("created_at", TSTZ, NN, Some("CURRENT_TIMESTAMP"));
const UPDATED_AT: ColumnSpec = ("updated_at", TSTZ, NN, Some("CURRENT_TIMESTAMP"));

/// Every table the migrations create (`seaql_migrations` aside).
pub const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "user_profiles",
        columns: &[
            UUID_PK,
            ("firebase_uid", "text", NN, None),
            ("email", "text", NULL, None),
            ("display_name", "text", NULL, None),
            ("photo_url", "text", NULL, None),
            CREATED_AT,
            UPDATED_AT,
        ],
    },
    TableSpec {
        name: "user_preferences",
        columns: &[
            UUID_PK,
            ("user_id", "uuid", NN, None),
            ("difficulty", "text", NN, Some("'medium'::text")),
            ("duration", "integer", NN, Some("30")),
            ("languages", "text[]", NN, Some("'{}'::text[]")),
            ("theme", "text", NN, Some("'system'::text")),
            CREATED_AT,
            UPDATED_AT,
        ],
    },
    TableSpec {
        name: "resumes",
        columns: &[
            UUID_PK,
            ("user_id", "uuid", NN, None),
            ("title", "text", NN, None),
            ("file_name", "text", NN, None),
            ("file_path", "text", NULL, None),
            ("file_size", "bigint", NN, None),
            ("content", "text", NULL, None),
            CREATED_AT,
            UPDATED_AT,
            // m002
            ("file_data", "bytea", NULL, None),
            // m005
            ("is_primary", "boolean", NN, Some("false")),
        ],
    },
    // m003: exactly LangChain PGVectorStore's default layout.
    TableSpec {
        name: "resume_chunks",
        columns: &[
            UUID_PK,
            ("text", "text", NULL, None),
            ("metadata", "jsonb", NULL, None),
            ("embedding", "vector(768)", NULL, None),
        ],
    },
    // m005: the TypeScript app's integer ids -> uuids.
    TableSpec {
        name: "legacy_ids",
        columns: &[
            ("table_name", "text", NN, None),
            ("legacy_id", "bigint", NN, None),
            ("id", "uuid", NN, None),
            ("imported_at", TSTZ, NN, Some("now()")),
        ],
    },
    // m009: the library's own table (not LangChain's), no vector index.
    TableSpec {
        name: "resume_chunks_staged",
        columns: &[
            ("id", "uuid", NN, None),
            ("text", "text", NN, None),
            ("metadata", "jsonb", NN, None),
            ("embedding", "vector(768)", NN, None),
            (
                "resume_id",
                "uuid",
                NN,
                Some("GENERATED ALWAYS AS (((metadata ->> 'resume_id'::text))::uuid) STORED"),
            ),
            ("staged_at", TSTZ, NN, Some("now()")),
        ],
    },
    // m010: the embedding models of the chunks.
    TableSpec {
        name: "embedding_models",
        columns: &[
            ("name", "text", NN, None),
            ("dimensions", "integer", NN, None),
            ("serving", "boolean", NN, Some("false")),
            ("declared_at", TSTZ, NN, Some("now()")),
        ],
    },
    TableSpec {
        name: "reembed_jobs",
        columns: &[
            ("id", "bigint", NN, None),
            ("from_name", "text", NN, None),
            ("from_dimensions", "integer", NN, None),
            ("to_name", "text", NN, None),
            ("to_dimensions", "integer", NN, None),
            ("state", "text", NN, None),
            ("backfilled_at", TSTZ, NULL, None),
            ("started_at", TSTZ, NN, Some("now()")),
            ("switched_at", TSTZ, NULL, None),
            ("ended_at", TSTZ, NULL, None),
            ("lease_until", TSTZ, NULL, None),
        ],
    },
    TableSpec {
        name: "reembed_queue",
        columns: &[
            ("id", "uuid", NN, None),
            ("seq", "bigint", NN, None),
            ("queued_at", TSTZ, NN, Some("now()")),
        ],
    },
];

/// Every index, primary keys included.
pub const INDEXES: &[ObjectSpec] = &[
    ObjectSpec {
        table: "user_profiles",
        name: "user_profiles_pkey",
        definition: "CREATE UNIQUE INDEX user_profiles_pkey ON user_profiles USING btree (id)",
    },
    ObjectSpec {
        table: "user_profiles",
        name: "idx_user_profiles_firebase_uid",
        definition: "CREATE UNIQUE INDEX idx_user_profiles_firebase_uid ON user_profiles \
                     USING btree (firebase_uid)",
    },
    ObjectSpec {
        table: "user_preferences",
        name: "user_preferences_pkey",
        definition: "CREATE UNIQUE INDEX user_preferences_pkey ON user_preferences \
                     USING btree (id)",
    },
    ObjectSpec {
        table: "user_preferences",
        name: "idx_user_preferences_user_id",
        definition: "CREATE UNIQUE INDEX idx_user_preferences_user_id ON user_preferences \
                     USING btree (user_id)",
    },
    ObjectSpec {
        table: "resumes",
        name: "resumes_pkey",
        definition: "CREATE UNIQUE INDEX resumes_pkey ON resumes USING btree (id)",
    },
    ObjectSpec {
        table: "resumes",
        name: "idx_resumes_user_id",
        definition: "CREATE INDEX idx_resumes_user_id ON resumes USING btree (user_id)",
    },
    ObjectSpec {
        table: "resume_chunks",
        name: "resume_chunks_pkey",
        definition: "CREATE UNIQUE INDEX resume_chunks_pkey ON resume_chunks USING btree (id)",
    },
    ObjectSpec {
        table: "resume_chunks",
        name: "idx_resume_chunks_metadata",
        definition: "CREATE INDEX idx_resume_chunks_metadata ON resume_chunks \
                     USING gin (metadata)",
    },
    ObjectSpec {
        table: "resume_chunks",
        name: "idx_resume_chunks_embedding",
        // m003, with m008's storage parameter.
        definition: "CREATE INDEX idx_resume_chunks_embedding ON resume_chunks \
                     USING hnsw (embedding vector_cosine_ops) WITH (ef_construction='200')",
    },
    ObjectSpec {
        table: "resume_chunks",
        name: "idx_resume_chunks_user_id",
        definition: "CREATE INDEX idx_resume_chunks_user_id ON resume_chunks \
                     USING btree (((metadata ->> 'user_id'::text)))",
    },
    ObjectSpec {
        table: "resume_chunks",
        name: "idx_resume_chunks_resume_id",
        definition: "CREATE INDEX idx_resume_chunks_resume_id ON resume_chunks \
                     USING btree (((metadata ->> 'resume_id'::text)))",
    },
    // m005
    ObjectSpec {
        table: "resumes",
        name: "resumes_one_primary_per_user",
        definition: "CREATE INDEX resumes_one_primary_per_user ON resumes USING btree (user_id) \
                     WHERE is_primary",
    },
    ObjectSpec {
        table: "legacy_ids",
        name: "legacy_ids_pkey",
        definition: "CREATE UNIQUE INDEX legacy_ids_pkey ON legacy_ids \
                     USING btree (table_name, legacy_id)",
    },
    ObjectSpec {
        table: "legacy_ids",
        name: "idx_legacy_ids_id",
        definition: "CREATE UNIQUE INDEX idx_legacy_ids_id ON legacy_ids \
                     USING btree (table_name, id)",
    },
    // m009
    ObjectSpec {
        table: "resume_chunks_staged",
        name: "resume_chunks_staged_pkey",
        definition: "CREATE UNIQUE INDEX resume_chunks_staged_pkey ON resume_chunks_staged \
                     USING btree (id)",
    },
    ObjectSpec {
        table: "resume_chunks_staged",
        name: "idx_resume_chunks_staged_resume_id",
        definition: "CREATE INDEX idx_resume_chunks_staged_resume_id ON resume_chunks_staged \
                     USING btree (resume_id)",
    },
    ObjectSpec {
        table: "resume_chunks_staged",
        name: "idx_resume_chunks_staged_user_id",
        definition: "CREATE INDEX idx_resume_chunks_staged_user_id ON resume_chunks_staged \
                     USING btree (((metadata ->> 'user_id'::text)))",
    },
    ObjectSpec {
        table: "embedding_models",
        name: "embedding_models_pkey",
        definition: "CREATE UNIQUE INDEX embedding_models_pkey ON embedding_models \
                     USING btree (name, dimensions)",
    },
    ObjectSpec {
        table: "embedding_models",
        name: "idx_embedding_models_one_serving",
        definition: "CREATE UNIQUE INDEX idx_embedding_models_one_serving ON embedding_models \
                     USING btree (serving) WHERE serving",
    },
    ObjectSpec {
        table: "reembed_jobs",
        name: "reembed_jobs_pkey",
        definition: "CREATE UNIQUE INDEX reembed_jobs_pkey ON reembed_jobs USING btree (id)",
    },
    ObjectSpec {
        table: "reembed_jobs",
        name: "idx_reembed_jobs_one_active",
        definition: "CREATE UNIQUE INDEX idx_reembed_jobs_one_active ON reembed_jobs \
                     USING btree ((true)) WHERE (state = ANY (ARRAY['backfill'::text, \
                     'switched'::text]))",
    },
    ObjectSpec {
        table: "reembed_queue",
        name: "reembed_queue_pkey",
        definition: "CREATE UNIQUE INDEX reembed_queue_pkey ON reembed_queue USING btree (id)",
    },
];

/// Every constraint: primary keys, foreign keys (with their cascade), CHECKs.
pub const CONSTRAINTS: &[ObjectSpec] = &[
    ObjectSpec {
        table: "user_profiles",
        name: "user_profiles_pkey",
        definition: "PRIMARY KEY (id)",
    },
    ObjectSpec {
        table: "user_profiles",
        name: "user_profiles_firebase_uid_check",
        definition: "CHECK (((char_length(firebase_uid) >= 1) AND \
                     (char_length(firebase_uid) <= 128)))",
    },
    ObjectSpec {
        table: "user_preferences",
        name: "user_preferences_pkey",
        definition: "PRIMARY KEY (id)",
    },
    ObjectSpec {
        table: "user_preferences",
        name: "fk_user_preferences_user_id",
        definition: "FOREIGN KEY (user_id) REFERENCES user_profiles(id) ON DELETE CASCADE",
    },
    ObjectSpec {
        table: "user_preferences",
        name: "user_preferences_difficulty_check",
        definition: "CHECK ((difficulty = ANY (ARRAY['easy'::text, 'medium'::text, \
                     'hard'::text])))",
    },
    ObjectSpec {
        table: "user_preferences",
        name: "user_preferences_duration_check",
        definition: "CHECK (((duration >= 1) AND (duration <= 240)))",
    },
    ObjectSpec {
        table: "user_preferences",
        name: "user_preferences_theme_check",
        definition: "CHECK ((theme = ANY (ARRAY['light'::text, 'dark'::text, \
                     'system'::text])))",
    },
    ObjectSpec {
        table: "resumes",
        name: "resumes_pkey",
        definition: "PRIMARY KEY (id)",
    },
    ObjectSpec {
        table: "resumes",
        name: "fk_resumes_user_id",
        definition: "FOREIGN KEY (user_id) REFERENCES user_profiles(id) ON DELETE CASCADE",
    },
    ObjectSpec {
        table: "resumes",
        name: "resumes_title_check",
        definition: "CHECK ((char_length(title) > 0))",
    },
    ObjectSpec {
        table: "resumes",
        name: "resumes_file_name_check",
        definition: "CHECK ((char_length(file_name) > 0))",
    },
    ObjectSpec {
        table: "resumes",
        name: "resumes_file_size_check",
        definition: "CHECK ((file_size >= 0))",
    },
    // m002: file_size is the length of the stored PDF.
    ObjectSpec {
        table: "resumes",
        name: "resumes_check",
        definition: "CHECK (((file_data IS NULL) OR (octet_length(file_data) = file_size)))",
    },
    ObjectSpec {
        table: "resume_chunks",
        name: "resume_chunks_pkey",
        definition: "PRIMARY KEY (id)",
    },
    // m005: at most one primary resume per user.
    ObjectSpec {
        table: "resumes",
        name: "resumes_one_primary_per_user",
        definition: "EXCLUDE USING btree (user_id WITH =) WHERE (is_primary) DEFERRABLE",
    },
    ObjectSpec {
        table: "legacy_ids",
        name: "legacy_ids_pkey",
        definition: "PRIMARY KEY (table_name, legacy_id)",
    },
    ObjectSpec {
        table: "legacy_ids",
        name: "legacy_ids_table_name_check",
        definition: "CHECK ((table_name = ANY (ARRAY['user_profiles'::text, \
                     'user_preferences'::text, 'resumes'::text])))",
    },
    // m009: a staged chunk goes with its resume.
    ObjectSpec {
        table: "resume_chunks_staged",
        name: "resume_chunks_staged_pkey",
        definition: "PRIMARY KEY (id)",
    },
    ObjectSpec {
        table: "resume_chunks_staged",
        name: "fk_resume_chunks_staged_resume_id",
        definition: "FOREIGN KEY (resume_id) REFERENCES resumes(id) ON DELETE CASCADE",
    },
    // m010
    ObjectSpec {
        table: "embedding_models",
        name: "embedding_models_pkey",
        definition: "PRIMARY KEY (name, dimensions)",
    },
    ObjectSpec {
        table: "embedding_models",
        name: "embedding_models_name_check",
        definition: "CHECK ((name ~ '^[A-Za-z0-9._:/@-]{1,200}$'::text))",
    },
    ObjectSpec {
        table: "embedding_models",
        name: "embedding_models_dimensions_check",
        definition: "CHECK (((dimensions >= 1) AND (dimensions <= 16000)))",
    },
    ObjectSpec {
        table: "reembed_jobs",
        name: "reembed_jobs_pkey",
        definition: "PRIMARY KEY (id)",
    },
    ObjectSpec {
        table: "reembed_jobs",
        name: "reembed_jobs_state_check",
        definition: "CHECK ((state = ANY (ARRAY['backfill'::text, 'switched'::text, \
                     'finished'::text, 'cancelled'::text])))",
    },
    ObjectSpec {
        table: "reembed_queue",
        name: "reembed_queue_pkey",
        definition: "PRIMARY KEY (id)",
    },
];

/// Every trigger: `updated_at` on the three m001 tables, m004's chunk
/// clean-up on `resumes` and `user_profiles`, m007's id normalization on
/// `resume_chunks`.
pub const TRIGGERS: &[ObjectSpec] = &[
    ObjectSpec {
        table: "user_profiles",
        name: "trg_user_profiles_updated_at",
        definition: "CREATE TRIGGER trg_user_profiles_updated_at BEFORE UPDATE ON user_profiles \
                     FOR EACH ROW EXECUTE FUNCTION set_updated_at()",
    },
    ObjectSpec {
        table: "user_preferences",
        name: "trg_user_preferences_updated_at",
        definition: "CREATE TRIGGER trg_user_preferences_updated_at BEFORE UPDATE ON \
                     user_preferences FOR EACH ROW EXECUTE FUNCTION set_updated_at()",
    },
    ObjectSpec {
        table: "resumes",
        name: "trg_resumes_updated_at",
        definition: "CREATE TRIGGER trg_resumes_updated_at BEFORE UPDATE ON resumes \
                     FOR EACH ROW EXECUTE FUNCTION set_updated_at()",
    },
    ObjectSpec {
        table: "resumes",
        name: "trg_resumes_delete_chunks",
        definition: "CREATE TRIGGER trg_resumes_delete_chunks AFTER DELETE ON resumes \
                     REFERENCING OLD TABLE AS deleted_resumes FOR EACH STATEMENT \
                     EXECUTE FUNCTION delete_chunks_of_deleted_resumes()",
    },
    ObjectSpec {
        table: "user_profiles",
        name: "trg_user_profiles_delete_chunks",
        definition: "CREATE TRIGGER trg_user_profiles_delete_chunks AFTER DELETE ON \
                     user_profiles REFERENCING OLD TABLE AS deleted_users FOR EACH STATEMENT \
                     EXECUTE FUNCTION delete_chunks_of_deleted_users()",
    },
    // m007: UUID strings in chunk metadata ids stored in lower case.
    ObjectSpec {
        table: "resume_chunks",
        name: "trg_resume_chunks_lowercase_ids",
        definition: "CREATE TRIGGER trg_resume_chunks_lowercase_ids BEFORE INSERT OR UPDATE \
                     OF metadata ON resume_chunks FOR EACH ROW WHEN ((((new.metadata ->> \
                     'user_id'::text) ~ '[A-F]'::text) OR ((new.metadata ->> \
                     'resume_id'::text) ~ '[A-F]'::text))) EXECUTE FUNCTION \
                     lowercase_chunk_metadata_ids()",
    },
];

/// Every function the migrations define (signatures).
pub const FUNCTIONS: &[&str] = &[
    "set_updated_at()",
    "delete_chunks_of_deleted_resumes()",
    "delete_chunks_of_deleted_users()",
    "lowercase_chunk_metadata_ids()",
    "reembed_enqueue()",
];

/// The schema the migrations produce, as a [`Catalog`] (no schema name, no
/// extensions: `verify` checks pgvector's version on its own).
pub fn catalog() -> Catalog {
    let definition = |s: &ObjectSpec| Definition {
        table: s.table.to_owned(),
        definition: s.definition.to_owned(),
    };
    Catalog {
        schema: String::new(),
        extensions: Default::default(),
        tables: TABLES
            .iter()
            .map(|t| {
                let columns = t
                    .columns
                    .iter()
                    .map(|&(name, sql_type, not_null, default)| Column {
                        name: name.to_owned(),
                        sql_type: sql_type.to_owned(),
                        not_null,
                        default: default.map(str::to_owned),
                    })
                    .collect();
                (t.name.to_owned(), columns)
            })
            .collect(),
        indexes: INDEXES
            .iter()
            .map(|s| (s.name.to_owned(), definition(s)))
            .collect(),
        constraints: CONSTRAINTS
            .iter()
            .map(|s| ((s.table.to_owned(), s.name.to_owned()), definition(s)))
            .collect(),
        triggers: TRIGGERS
            .iter()
            .map(|s| ((s.table.to_owned(), s.name.to_owned()), definition(s)))
            .collect(),
        functions: FUNCTIONS.iter().map(|f| (*f).to_owned()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_object_belongs_to_a_described_table() {
        let tables: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
        for spec in INDEXES.iter().chain(CONSTRAINTS).chain(TRIGGERS) {
            assert!(tables.contains(&spec.table), "{spec:?}");
        }
        for spec in INDEXES {
            assert!(
                spec.definition
                    .contains(&format!("INDEX {} ON {} ", spec.name, spec.table)),
                "{spec:?}"
            );
        }
        for spec in TRIGGERS {
            assert!(
                spec.definition.contains(&format!("TRIGGER {} ", spec.name))
                    && spec.definition.contains(&format!(" ON {} ", spec.table)),
                "{spec:?}"
            );
        }
    }

    #[test]
    fn resume_chunks_is_exactly_langchains_layout() {
        // Other services read and write this table through LangChain's
        // PGVectorStore: its four default columns, nothing else.
        let catalog = catalog();
        let columns: Vec<String> = catalog.tables["resume_chunks"]
            .iter()
            .map(|c| format!("{} {}", c.name, c.sql_type))
            .collect();
        assert_eq!(
            columns,
            [
                "id uuid",
                "text text",
                "metadata jsonb",
                "embedding vector(768)"
            ]
        );
    }
}
