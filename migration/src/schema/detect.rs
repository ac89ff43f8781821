//! Which version of the TypeScript app's schema a database has, from its
//! catalog (a [`Catalog`] snapshot).
//!
//! The versions (see `shared/spec/legacy-typescript-databases.md`):
//!
//! | version | tables the import reads | how to tell |
//! |---|---|---|
//! | v0 | `resume_chunks` only (LangChain's table, `embedding vector` without dimension) | no profile, preference or resume table |
//! | v1 | step files 001/002 + LangChain-layout chunks (`uuid` ids, `vector(768)`) | `resumes.file_name` nullable, `file_data` last; chunks without `resume_id` column |
//! | v2 | step files 001..004 | as v1, but chunks with `serial` ids and `resume_id`, `chunk_index`, `created_at` columns |
//! | v3 | `001_complete_schema.sql` | `resumes.file_name NOT NULL`, `file_data` before `is_primary` |
//! | v4 | v3 + `004_interview_sessions.sql` | v3 + `job_descriptions`, `interview_sessions`, `chat_messages`, `question_feedback` |
//! | v5 | v4 + `005_hr_recruitment_system.sql` | v4 + `user_roles`, `resume_applications` |
//!
//! The columns of the tables the import reads (name, type, `NOT NULL`, in
//! order) must match one version exactly; defaults, indexes, triggers and
//! comments are not compared (index names of v1 are assumptions, sequences
//! are named after their tables). Every other table is outside this data
//! layer ([`Detected::unowned_tables`]). v0 is confirmed from the data too,
//! by the import (`metadata.resume_id` never appears in v0).

use serde::Serialize;

use crate::catalog::{Catalog, Column};

/// A schema version of the TypeScript app's database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum LegacyVersion {
    /// LangChain's auto-created `resume_chunks` only.
    #[serde(rename = "v0")]
    V0,
    /// Step files 001 + 002, LangChain-layout chunks.
    #[serde(rename = "v1")]
    V1,
    /// Step files 001..004: chunks with serial ids.
    #[serde(rename = "v2")]
    V2,
    /// The complete schema file.
    #[serde(rename = "v3")]
    V3,
    /// v3 + interview sessions.
    #[serde(rename = "v4")]
    V4,
    /// v4 + HR / recruitment.
    #[serde(rename = "v5")]
    V5,
}

impl std::fmt::Display for LegacyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V0 => "v0",
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::V3 => "v3",
            Self::V4 => "v4",
            Self::V5 => "v5",
        })
    }
}

/// How `resume_chunks` is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkLayout {
    /// LangChain's columns only: `uuid` id, `text`, `metadata`, `embedding`
    /// (v0, v1). The owner and resume are in `metadata` only.
    LangChain,
    /// `serial` id plus `resume_id`, `chunk_index`, `created_at` columns
    /// (v2..v5).
    Serial,
}

/// A recognized legacy schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Detected {
    /// The version.
    pub version: LegacyVersion,
    /// Why: the facts of the catalog that decided it.
    pub evidence: Vec<String>,
    /// Layout of `resume_chunks`.
    pub chunk_layout: ChunkLayout,
    /// Tables of the schema that this data layer does not have (the
    /// interview and HR tables of v4 and v5, or anything else), sorted.
    pub unowned_tables: Vec<String>,
}

/// A schema that matches no known version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShapeMismatch {
    /// The version it resembles most, if any table the import reads exists.
    pub closest: Option<LegacyVersion>,
    /// How it differs from that version.
    pub differences: Vec<String>,
}

impl std::fmt::Display for ShapeMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.closest {
            Some(v) => writeln!(
                f,
                "the schema matches no version of the TypeScript app's database; it is closest \
                 to {v}, which differs in:"
            )?,
            None => writeln!(
                f,
                "the schema is not one of the TypeScript app's (user_profiles, \
                 user_preferences, resumes, resume_chunks):"
            )?,
        }
        for d in &self.differences {
            writeln!(f, "  - {d}")?;
        }
        Ok(())
    }
}

/// The tables the import reads (everything else is left in the source).
pub const CORE_TABLES: [&str; 4] = [
    "user_profiles",
    "user_preferences",
    "resumes",
    "resume_chunks",
];

/// Tables `004_interview_sessions.sql` adds (v4).
pub const V4_TABLES: [&str; 4] = [
    "job_descriptions",
    "interview_sessions",
    "chat_messages",
    "question_feedback",
];
/// Tables `005_hr_recruitment_system.sql` adds (v5).
pub const V5_TABLES: [&str; 2] = ["user_roles", "resume_applications"];

/// A column as the app's SQL creates it: name, `format_type`, `NOT NULL`.
type Col = (&'static str, &'static str, bool);

const TS: &str = "timestamp without time zone";
const NN: bool = true;
const NULL: bool = false;
/// Matches `vector` with or without a dimension.
const ANY_VECTOR: &str = "vector*";

const PROFILES: &[Col] = &[
    ("id", "integer", NN),
    ("firebase_uid", "character varying(128)", NN),
    ("email", "character varying(255)", NN),
    ("display_name", "character varying(255)", NULL),
    ("photo_url", "text", NULL),
    ("created_at", TS, NULL),
    ("updated_at", TS, NULL),
];

const PREFERENCES: &[Col] = &[
    ("id", "integer", NN),
    ("user_id", "integer", NULL),
    ("interview_difficulty", "character varying(50)", NULL),
    ("interview_duration", "integer", NULL),
    ("preferred_languages", "text[]", NULL),
    ("theme", "character varying(20)", NULL),
    ("created_at", TS, NULL),
    ("updated_at", TS, NULL),
];

/// Step files 001 + 002 (v1, v2): `file_name` nullable, `file_data` added
/// last by `ALTER TABLE`.
const RESUMES_STEPS: &[Col] = &[
    ("id", "integer", NN),
    ("user_id", "integer", NULL),
    ("title", "character varying(255)", NN),
    ("file_name", "character varying(255)", NULL),
    ("file_path", "text", NULL),
    ("file_size", "integer", NULL),
    ("content", "text", NULL),
    ("is_primary", "boolean", NULL),
    ("created_at", TS, NULL),
    ("updated_at", TS, NULL),
    ("file_data", "bytea", NULL),
];

/// The complete schema file (v3+).
const RESUMES_COMPLETE: &[Col] = &[
    ("id", "integer", NN),
    ("user_id", "integer", NULL),
    ("title", "character varying(255)", NN),
    ("file_name", "character varying(255)", NN),
    ("file_path", "text", NULL),
    ("file_size", "integer", NULL),
    ("content", "text", NULL),
    ("file_data", "bytea", NULL),
    ("is_primary", "boolean", NULL),
    ("created_at", TS, NULL),
    ("updated_at", TS, NULL),
];

/// LangChain `PGVectorStore.initialize` without `dimensions` (v0).
const CHUNKS_V0: &[Col] = &[
    ("id", "uuid", NN),
    ("text", "text", NULL),
    ("metadata", "jsonb", NULL),
    ("embedding", ANY_VECTOR, NULL),
];

/// The guide's 003 (v1): LangChain's layout with 768 dimensions.
const CHUNKS_V1: &[Col] = &[
    ("id", "uuid", NN),
    ("text", "text", NULL),
    ("metadata", "jsonb", NULL),
    ("embedding", "vector(768)", NULL),
];

/// Step 003 + 004 and the complete schema file (v2+).
const CHUNKS_SERIAL: &[Col] = &[
    ("id", "integer", NN),
    ("resume_id", "integer", NULL),
    ("chunk_index", "integer", NULL),
    ("text", "text", NN),
    ("metadata", "jsonb", NULL),
    ("embedding", "vector(768)", NULL),
    ("created_at", TS, NULL),
];

/// One candidate: the version, the tables it has (with columns) and the
/// core tables it must not have.
struct Candidate {
    version: LegacyVersion,
    tables: &'static [(&'static str, &'static [Col])],
    absent: &'static [&'static str],
    layout: ChunkLayout,
}

const CANDIDATES: &[Candidate] = &[
    Candidate {
        version: LegacyVersion::V0,
        tables: &[("resume_chunks", CHUNKS_V0)],
        absent: &["user_profiles", "user_preferences", "resumes"],
        layout: ChunkLayout::LangChain,
    },
    Candidate {
        version: LegacyVersion::V1,
        tables: &[
            ("user_profiles", PROFILES),
            ("user_preferences", PREFERENCES),
            ("resumes", RESUMES_STEPS),
            ("resume_chunks", CHUNKS_V1),
        ],
        absent: &[],
        layout: ChunkLayout::LangChain,
    },
    Candidate {
        version: LegacyVersion::V2,
        tables: &[
            ("user_profiles", PROFILES),
            ("user_preferences", PREFERENCES),
            ("resumes", RESUMES_STEPS),
            ("resume_chunks", CHUNKS_SERIAL),
        ],
        absent: &[],
        layout: ChunkLayout::Serial,
    },
    Candidate {
        version: LegacyVersion::V3,
        tables: &[
            ("user_profiles", PROFILES),
            ("user_preferences", PREFERENCES),
            ("resumes", RESUMES_COMPLETE),
            ("resume_chunks", CHUNKS_SERIAL),
        ],
        absent: &[],
        layout: ChunkLayout::Serial,
    },
];

/// Recognizes the version of the TypeScript app's schema in `catalog`.
///
/// # Errors
/// [`ShapeMismatch`] with the closest version and every difference from it
/// when the tables the import reads match no version exactly.
pub fn detect(catalog: &Catalog) -> Result<Detected, ShapeMismatch> {
    if !CORE_TABLES.iter().any(|t| catalog.tables.contains_key(*t)) {
        return Err(ShapeMismatch {
            closest: None,
            differences: CORE_TABLES
                .iter()
                .map(|t| format!("table {t} is missing"))
                .collect(),
        });
    }
    let uuid_ids = catalog
        .tables
        .get("user_profiles")
        .and_then(|cols| cols.iter().find(|c| c.name == "id"))
        .is_some_and(|c| c.sql_type == "uuid");
    if uuid_ids {
        return Err(ShapeMismatch {
            closest: None,
            differences: vec![
                "user_profiles.id is a uuid: this is this project's own schema (or one like it), \
                 not the TypeScript app's"
                    .into(),
            ],
        });
    }
    let scored: Vec<(&Candidate, Vec<String>)> = CANDIDATES
        .iter()
        .map(|c| (c, differences(catalog, c)))
        .collect();
    let (best, diffs) = scored
        .iter()
        .min_by_key(|(c, d)| (d.len(), std::cmp::Reverse(c.version)))
        .expect("candidates are not empty");
    if !diffs.is_empty() {
        return Err(ShapeMismatch {
            closest: Some(best.version),
            differences: diffs.clone(),
        });
    }
    let has = |t: &str| catalog.tables.contains_key(t);
    let mut version = best.version;
    let mut evidence = evidence_for(best.version);
    if version == LegacyVersion::V3 && V4_TABLES.iter().all(|t| has(t)) {
        version = LegacyVersion::V4;
        evidence.push(format!(
            "{} exist (004_interview_sessions.sql)",
            V4_TABLES.join(", ")
        ));
        if V5_TABLES.iter().all(|t| has(t)) {
            version = LegacyVersion::V5;
            evidence.push(format!(
                "{} exist (005_hr_recruitment_system.sql)",
                V5_TABLES.join(", ")
            ));
        }
    }
    let unowned_tables = catalog
        .tables
        .keys()
        .filter(|t| !CORE_TABLES.contains(&t.as_str()))
        .cloned()
        .collect();
    Ok(Detected {
        version,
        evidence,
        chunk_layout: best.layout,
        unowned_tables,
    })
}

fn evidence_for(version: LegacyVersion) -> Vec<String> {
    let profiles = "user_profiles, user_preferences and resumes have integer (serial) ids and \
                    timestamps without time zone";
    match version {
        LegacyVersion::V0 => vec![
            "resume_chunks is the only table of the app: LangChain's layout (uuid id, text, \
             metadata, embedding) without user_profiles, user_preferences or resumes"
                .into(),
        ],
        LegacyVersion::V1 => vec![
            profiles.into(),
            "resumes.file_name is nullable and file_data is the last column (step files 001 + \
             002)"
                .into(),
            "resume_chunks has LangChain's layout with uuid ids and vector(768) (the guide's \
             003)"
                .into(),
        ],
        LegacyVersion::V2 => vec![
            profiles.into(),
            "resumes.file_name is nullable and file_data is the last column (step files 001 + \
             002)"
                .into(),
            "resume_chunks has serial ids and resume_id, chunk_index, created_at columns (step \
             files 003 + 004)"
                .into(),
        ],
        _ => vec![
            profiles.into(),
            "resumes.file_name is NOT NULL and file_data precedes is_primary \
             (001_complete_schema.sql)"
                .into(),
            "resume_chunks has serial ids and resume_id, chunk_index, created_at columns".into(),
        ],
    }
}

fn differences(catalog: &Catalog, candidate: &Candidate) -> Vec<String> {
    let mut out = Vec::new();
    let v = candidate.version;
    for table in candidate.absent {
        if catalog.tables.contains_key(*table) {
            out.push(format!("table {table} exists; {v} has none"));
        }
    }
    for (table, expected) in candidate.tables {
        match catalog.tables.get(*table) {
            None => out.push(format!("table {table} is missing")),
            Some(columns) => out.extend(column_differences(table, columns, expected, v)),
        }
    }
    out
}

fn column_differences(
    table: &str,
    actual: &[Column],
    expected: &[Col],
    v: LegacyVersion,
) -> Vec<String> {
    let show = |ty: &str, nn: bool| {
        let ty = if ty == ANY_VECTOR { "vector" } else { ty };
        if nn {
            format!("{ty} NOT NULL")
        } else {
            ty.to_owned()
        }
    };
    let mut out = Vec::new();
    for &(name, ty, nn) in expected {
        match actual.iter().find(|c| c.name == name) {
            None => out.push(format!(
                "column {table}.{name} is missing ({v}: {})",
                show(ty, nn)
            )),
            Some(c) if !type_matches(&c.sql_type, ty) || c.not_null != nn => out.push(format!(
                "column {table}.{name} is {}, {v} has {}",
                show(&c.sql_type, c.not_null),
                show(ty, nn)
            )),
            Some(_) => {}
        }
    }
    for c in actual {
        if !expected.iter().any(|(name, ..)| *name == c.name) {
            out.push(format!(
                "column {table}.{} ({}) is not in {v}",
                c.name,
                show(&c.sql_type, c.not_null)
            ));
        }
    }
    if out.is_empty() {
        let order: Vec<&str> = actual.iter().map(|c| c.name.as_str()).collect();
        let wanted: Vec<&str> = expected.iter().map(|(n, ..)| *n).collect();
        if order != wanted {
            out.push(format!(
                "columns of {table} are in the order {}; {v} has {}",
                order.join(", "),
                wanted.join(", ")
            ));
        }
    }
    out
}

fn type_matches(actual: &str, expected: &str) -> bool {
    if expected == ANY_VECTOR {
        actual == "vector" || (actual.starts_with("vector(") && actual.ends_with(')'))
    } else {
        actual == expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(tables: &[(&str, &[Col])]) -> Catalog {
        let mut c = Catalog::default();
        for (name, cols) in tables {
            c.tables.insert(
                (*name).to_owned(),
                cols.iter()
                    .map(|&(n, t, nn)| Column {
                        name: n.into(),
                        sql_type: if t == ANY_VECTOR {
                            "vector".into()
                        } else {
                            t.into()
                        },
                        not_null: nn,
                        default: None,
                    })
                    .collect(),
            );
        }
        c
    }

    #[test]
    fn every_version_is_recognized() {
        let v3 = [
            ("user_profiles", PROFILES),
            ("user_preferences", PREFERENCES),
            ("resumes", RESUMES_COMPLETE),
            ("resume_chunks", CHUNKS_SERIAL),
        ];
        type Tables<'a> = Vec<(&'a str, &'a [Col])>;
        let cases: Vec<(Tables, LegacyVersion)> = vec![
            (vec![("resume_chunks", CHUNKS_V0)], LegacyVersion::V0),
            (
                vec![
                    ("user_profiles", PROFILES),
                    ("user_preferences", PREFERENCES),
                    ("resumes", RESUMES_STEPS),
                    ("resume_chunks", CHUNKS_V1),
                ],
                LegacyVersion::V1,
            ),
            (
                vec![
                    ("user_profiles", PROFILES),
                    ("user_preferences", PREFERENCES),
                    ("resumes", RESUMES_STEPS),
                    ("resume_chunks", CHUNKS_SERIAL),
                ],
                LegacyVersion::V2,
            ),
            (v3.to_vec(), LegacyVersion::V3),
            (
                v3.iter()
                    .copied()
                    .chain(V4_TABLES.iter().map(|t| (*t, &[][..])))
                    .collect(),
                LegacyVersion::V4,
            ),
            (
                v3.iter()
                    .copied()
                    .chain(V4_TABLES.iter().chain(&V5_TABLES).map(|t| (*t, &[][..])))
                    .collect(),
                LegacyVersion::V5,
            ),
        ];
        for (tables, version) in cases {
            let d = detect(&catalog(&tables)).unwrap();
            assert_eq!(d.version, version, "{:?}", d.evidence);
        }
    }

    #[test]
    fn a_changed_column_is_refused_with_the_closest_version() {
        let mut resumes = RESUMES_COMPLETE.to_vec();
        resumes[3] = ("file_name", "text", true);
        let c = catalog(&[
            ("user_profiles", PROFILES),
            ("user_preferences", PREFERENCES),
            ("resumes", &resumes),
            ("resume_chunks", CHUNKS_SERIAL),
            ("sessions", &[]),
        ]);
        let err = detect(&c).unwrap_err();
        assert_eq!(err.closest, Some(LegacyVersion::V3));
        assert_eq!(
            err.differences,
            ["column resumes.file_name is text NOT NULL, v3 has character varying(255) NOT NULL"]
        );
    }

    #[test]
    fn this_projects_schema_is_not_a_legacy_one() {
        let err = detect(&crate::expected::catalog()).unwrap_err();
        assert_eq!(err.closest, None);
        assert!(
            err.differences[0].contains("this project's own schema"),
            "{err}"
        );
    }
}
