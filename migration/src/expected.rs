//! What the migrations produce, in one place: the expectations `verify`
//! checks a live database against.
//!
//! Definitions are written the way PostgreSQL prints them back
//! (`pg_get_indexdef`, `pg_get_constraintdef`, `pg_get_triggerdef`,
//! `format_type`), without the schema qualifier. When a migration changes
//! the schema, update this file too: the tests run `verify` against a freshly
//! migrated database and fail until it matches.

/// The pgvector extension.
pub const PGVECTOR: &str = "vector";
/// Oldest pgvector with HNSW indexes (`idx_resume_chunks_embedding`).
pub const PGVECTOR_MIN_VERSION: &str = "0.5.0";

/// A column: name, `format_type()` type, `NOT NULL`.
pub type ColumnSpec = (&'static str, &'static str, bool);

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

/// Every table the migrations create (`seaql_migrations` aside).
pub const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "user_profiles",
        columns: &[
            ("id", "uuid", NN),
            ("firebase_uid", "text", NN),
            ("email", "text", NULL),
            ("display_name", "text", NULL),
            ("photo_url", "text", NULL),
            ("created_at", TSTZ, NN),
            ("updated_at", TSTZ, NN),
        ],
    },
    TableSpec {
        name: "user_preferences",
        columns: &[
            ("id", "uuid", NN),
            ("user_id", "uuid", NN),
            ("difficulty", "text", NN),
            ("duration", "integer", NN),
            ("languages", "text[]", NN),
            ("theme", "text", NN),
            ("created_at", TSTZ, NN),
            ("updated_at", TSTZ, NN),
        ],
    },
    TableSpec {
        name: "resumes",
        columns: &[
            ("id", "uuid", NN),
            ("user_id", "uuid", NN),
            ("title", "text", NN),
            ("file_name", "text", NN),
            ("file_path", "text", NULL),
            ("file_size", "bigint", NN),
            ("content", "text", NULL),
            ("created_at", TSTZ, NN),
            ("updated_at", TSTZ, NN),
            // m002
            ("file_data", "bytea", NULL),
        ],
    },
    // m003: exactly LangChain PGVectorStore's default layout.
    TableSpec {
        name: "resume_chunks",
        columns: &[
            ("id", "uuid", NN),
            ("text", "text", NULL),
            ("metadata", "jsonb", NULL),
            ("embedding", "vector(768)", NULL),
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
        definition: "CREATE INDEX idx_resume_chunks_embedding ON resume_chunks \
                     USING hnsw (embedding vector_cosine_ops)",
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
];

/// Every trigger: `updated_at` on the three m001 tables, m004's chunk
/// clean-up on `resumes` and `user_profiles`.
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
];

/// Every function the migrations define (signatures).
pub const FUNCTIONS: &[&str] = &[
    "set_updated_at()",
    "delete_chunks_of_deleted_resumes()",
    "delete_chunks_of_deleted_users()",
];
