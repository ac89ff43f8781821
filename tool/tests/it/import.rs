//! `migration import` and `up`'s refusal of foreign schemas, on the legacy
//! fixtures (`tests/fixtures/legacy/v0.sql` .. `v5.sql`, loaded with psql):
//! every row accounted for, checksums, the report, the source left
//! untouched, dry runs writing nothing, failures leaving the target empty,
//! and every refusal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sea_orm::ConnectionTrait;
use serde_json::Value as Json;
use test_db::TestDatabase;

use crate::common::*;

/// The fixtures' directory.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy")
}

/// A fresh database loaded with `vN.sql` (psql, as the fixtures' README
/// says).
async fn legacy(version: &str) -> TestDatabase {
    let db = TestDatabase::empty().await;
    load(&db, &format!("{version}.sql"));
    db
}

fn load(db: &TestDatabase, file: &str) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(fixtures().join(file))
        .arg(db.url())
        .output()
        .expect("psql must be installed (package postgresql-client)");
    assert!(
        out.status.success(),
        "loading {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `expected.json` of the fixtures, for one version.
fn expected(version: &str) -> Json {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let all: Json = serde_json::from_str(&text).unwrap();
    all["versions"][version].clone()
}

/// A per-table md5 of every row of the current schema (the fixtures'
/// `check.sh` way), to show the source is untouched.
async fn data_md5<C: ConnectionTrait>(db: &C) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for table in strings(
        db,
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
    )
    .await
    {
        let md5 = strings(
            db,
            &format!(
                "SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\"), \
                 '')) FROM \"{table}\" t"
            ),
        )
        .await
        .remove(0);
        out.insert(table, md5);
    }
    out
}

/// A temporary report file.
fn report_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "mi_import_report_{name}_{}_{:?}.json",
        std::process::id(),
        std::thread::current().id()
    ))
}

/// Runs `import --from <source>` against `target` with `extra` arguments
/// and `--report`; returns the output text and the JSON report (when one
/// was written).
fn import(
    target: &TestDatabase,
    source: &TestDatabase,
    extra: &[&str],
    name: &str,
) -> (std::process::Output, Option<Json>) {
    let path = report_path(name);
    let _ = std::fs::remove_file(&path);
    let mut args = vec!["import", "--from", source.url(), "--report"];
    let path_str = path.to_str().unwrap().to_owned();
    args.push(&path_str);
    args.extend_from_slice(extra);
    let out = run(target.url(), &args);
    let json = std::fs::read_to_string(&path)
        .ok()
        .map(|t| serde_json::from_str(&t).expect("the report is JSON"));
    let _ = std::fs::remove_file(&path);
    (out, json)
}

/// Rows of every application table of the target.
async fn application_rows<C: ConnectionTrait>(db: &C) -> i64 {
    let mut n = 0;
    for table in [
        "user_profiles",
        "user_preferences",
        "resumes",
        "resume_chunks",
        "legacy_ids",
    ] {
        if strings(
            db,
            &format!("SELECT coalesce(to_regclass('{table}')::text, '')"),
        )
        .await[0]
            .is_empty()
        {
            continue;
        }
        n += count(db, &format!("SELECT count(*) FROM {table}")).await;
    }
    n
}

/// What each version's import must do with its edge cases.
struct Expectation {
    version: &'static str,
    /// Excluded rows with integer ids, and a piece of their reason.
    excluded: &'static [(&'static str, i64, &'static str)],
    /// Excluded chunks by the start of their reason (v0/v1 chunk ids are
    /// uuids), with how many.
    chunk_reasons: &'static [(&'static str, usize)],
    /// Profiles created for v0's uids.
    created: usize,
}

const SHARED_EXCLUSIONS: &[(&str, i64, &str)] = &[
    ("user_preferences", 15, "user_id is NULL"),
    ("user_preferences", 16, "user_id is NULL"),
    (
        "resumes",
        13,
        "names \"Fr1kQ5wL9sMx3ZvT7bYc2Hp6JdN8\" (profile 11)",
    ),
    ("resumes", 14, "user_id is NULL"),
];

const SERIAL_CHUNKS: &[(&str, usize)] = &[
    ("its resume 13 is excluded", 2),
    (
        "metadata.user_id \"Zd4lW8mK2qPz6XvR1bNc5Hs9JtF3\" names no profile",
        2,
    ),
];

const EXPECTATIONS: &[Expectation] = &[
    Expectation {
        version: "v0",
        excluded: &[],
        chunk_reasons: &[("no user", 6), ("its embedding has 1536 dimensions", 1)],
        created: 3,
    },
    Expectation {
        version: "v1",
        excluded: SHARED_EXCLUSIONS,
        chunk_reasons: &[
            ("its resume 13 is excluded", 2),
            // Zoe's resume chunks and her /new chunks.
            (
                "metadata.user_id \"Zd4lW8mK2qPz6XvR1bNc5Hs9JtF3\" names no profile",
                4,
            ),
            ("orphan: its resume 20 does not exist", 2),
            ("no user", 1),
        ],
        created: 0,
    },
    Expectation {
        version: "v2",
        excluded: SHARED_EXCLUSIONS,
        chunk_reasons: SERIAL_CHUNKS,
        created: 0,
    },
    Expectation {
        version: "v3",
        excluded: &[
            ("user_profiles", 16, "same as profile 7's"),
            ("user_preferences", 15, "user_id is NULL"),
            ("user_preferences", 16, "user_id is NULL"),
            ("user_preferences", 17, "its profile 16 is excluded"),
            ("resumes", 13, "(profile 11)"),
            ("resumes", 14, "user_id is NULL"),
        ],
        chunk_reasons: SERIAL_CHUNKS,
        created: 0,
    },
    Expectation {
        version: "v4",
        excluded: SHARED_EXCLUSIONS,
        chunk_reasons: SERIAL_CHUNKS,
        created: 0,
    },
    Expectation {
        version: "v5",
        excluded: SHARED_EXCLUSIONS,
        chunk_reasons: SERIAL_CHUNKS,
        created: 0,
    },
];

/// Everything one version must satisfy: `up` refuses it, the import
/// accounts for every row, checksums match, the target verifies, the
/// source is untouched.
async fn check_version(version: &str) -> (TestDatabase, TestDatabase, Json) {
    let exp = EXPECTATIONS.iter().find(|e| e.version == version).unwrap();
    let facts = expected(version);
    let source = legacy(version).await;
    let schema_before = schema_dump(source.url());
    let data_before = data_md5(source.conn()).await;

    // Part 1: `up` on the legacy database refuses and changes nothing.
    let refused = fails(source.url(), &["up"]);
    for part in [
        "refusing to apply m001_user_profiles",
        "the migration creates",
        &format!("This looks like a database of the TypeScript app (version {version})"),
        "migration import --from",
        "Nothing was changed",
    ] {
        assert!(
            refused.contains(part),
            "{version}: {part:?} missing from:\n{refused}"
        );
    }
    assert_same_schema(
        &schema_dump(source.url()),
        &schema_before,
        "after a refused up",
    );
    assert!(applied(source.conn()).await.is_empty());

    // Part 2: the import. v0 goes into an empty database, which the import
    // migrates first; the others into migrated, empty ones.
    let target = if version == "v0" {
        TestDatabase::empty().await
    } else {
        TestDatabase::new().await
    };
    if version == "v5" {
        // Tables outside this data layer must be acknowledged.
        let (out, _) = import(&target, &source, &[], "unowned");
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out);
        for table in [
            "job_descriptions",
            "interview_sessions",
            "chat_messages",
            "question_feedback",
            "user_roles",
            "resume_applications",
        ] {
            let line = format!("table {table} ({} rows)", facts["tables"][table]);
            assert!(err.contains(&line), "{line:?} missing from:\n{err}");
        }
        assert!(err.contains("view interview_session_summary"), "{err}");
        assert!(err.contains("--leave-unowned-tables"), "{err}");
        assert_eq!(application_rows(target.conn()).await, 0, "nothing written");
    }
    // v1 and v2 databases were made around the app's switch of embedding
    // model: the import refuses to guess, and takes the operator's word.
    let mut args = vec!["--leave-unowned-tables"];
    if matches!(version, "v1" | "v2") {
        let (out, _) = import(&target, &source, &args, "model");
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out);
        assert!(err.contains("--embedding-model NAME"), "{err}");
        assert_eq!(application_rows(target.conn()).await, 0, "nothing written");
        args.extend([
            "--embedding-model",
            "gemini-embedding-001",
            "--embedding-dimensions",
            "768",
        ]);
    }
    let (out, report) = import(&target, &source, &args, version);
    let text = text(&out);
    assert!(out.status.success(), "{version}: import failed:\n{text}");
    let report = report.expect("--report writes the JSON report");
    assert_eq!(report["version"], version, "{text}");
    assert_eq!(report["committed"], true);
    assert!(text.contains("Committed."), "{text}");

    // Every legacy row is accounted for, and the counts are the fixture's.
    let tables = report["tables"].as_object().unwrap();
    for (table, rows) in facts["tables"].as_object().unwrap() {
        let core = matches!(
            table.as_str(),
            "user_profiles" | "user_preferences" | "resumes" | "resume_chunks"
        );
        if !core {
            let listed = report["unowned_tables"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["table"] == *table)
                .unwrap_or_else(|| panic!("{version}: unowned table {table} not listed"));
            assert_eq!(listed["rows"], *rows, "{version}: {table}");
            continue;
        }
        let t = &tables[table];
        let (read, imported, excluded) = (
            t["read"].as_u64().unwrap(),
            t["imported"].as_u64().unwrap(),
            t["excluded"].as_u64().unwrap(),
        );
        assert_eq!(Some(read), rows.as_u64(), "{version}: {table} read");
        assert_eq!(read, imported + excluded, "{version}: {table}");
        let listed = report["exclusions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["table"] == *table)
            .count() as u64;
        assert_eq!(listed, excluded, "{version}: {table} exclusions listed");
        let target_table = count(target.conn(), &format!("SELECT count(*) FROM {table}")).await;
        let created = if table == "user_profiles" {
            exp.created
        } else {
            0
        };
        assert_eq!(
            target_table as u64,
            imported + created as u64,
            "{version}: rows of {table} in the target"
        );
    }
    assert_eq!(
        tables.len(),
        facts["tables"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(t, _)| {
                matches!(
                    t.as_str(),
                    "user_profiles" | "user_preferences" | "resumes" | "resume_chunks"
                )
            })
            .count(),
        "{version}: {tables:?}"
    );

    // Every exclusion carries the full original row.
    for e in report["exclusions"].as_array().unwrap() {
        assert_eq!(e["row"]["id"], e["legacy_id"], "{version}: {e}");
        assert!(!e["reason"].as_str().unwrap().is_empty());
    }
    for &(table, id, reason) in exp.excluded {
        let e = report["exclusions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["table"] == table && e["legacy_id"] == id)
            .unwrap_or_else(|| panic!("{version}: {table} {id} is not excluded"));
        assert!(
            e["reason"].as_str().unwrap().contains(reason),
            "{version}: {table} {id}: {e}"
        );
    }
    let int_excluded = report["exclusions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["table"] != "resume_chunks")
        .count();
    assert_eq!(int_excluded, exp.excluded.len(), "{version}");
    let chunk_exclusions: Vec<&str> = report["exclusions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["table"] == "resume_chunks")
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    for (reason, n) in exp.chunk_reasons {
        assert_eq!(
            chunk_exclusions
                .iter()
                .filter(|r| r.starts_with(reason))
                .count(),
            *n,
            "{version}: chunks excluded because {reason:?}: {chunk_exclusions:#?}"
        );
    }
    assert_eq!(
        chunk_exclusions.len(),
        exp.chunk_reasons.iter().map(|(_, n)| n).sum::<usize>(),
        "{version}: {chunk_exclusions:#?}"
    );
    assert_eq!(report["created"].as_array().unwrap().len(), exp.created);

    // Checksums of texts, embeddings and PDFs were compared before commit.
    let checksums = report["checksums"].as_object().unwrap();
    assert!(checksums.contains_key("resume_chunks"));
    assert_eq!(checksums.contains_key("resumes"), version != "v0");
    for (table, c) in checksums {
        assert_eq!(c["source"], c["target"], "{version}: {table}");
        assert_eq!(
            c["rows"].as_u64(),
            tables[table]["imported"].as_u64(),
            "{version}: {table}"
        );
    }
    // The target's own view of the copied chunks: every one is owned by an
    // existing profile, names its resume's owner, and keeps its originals.
    let conn = target.conn();
    assert_eq!(
        count(
            conn,
            "SELECT count(*) FROM resume_chunks c WHERE NOT EXISTS \
               (SELECT 1 FROM user_profiles p WHERE p.id::text = c.metadata ->> 'user_id')"
        )
        .await,
        0,
        "{version}: chunks without an owner"
    );
    assert_eq!(
        count(
            conn,
            "SELECT count(*) FROM resume_chunks c WHERE c.metadata ? 'resume_id' AND NOT EXISTS \
               (SELECT 1 FROM resumes r WHERE r.id::text = c.metadata ->> 'resume_id' \
                  AND r.user_id::text = c.metadata ->> 'user_id')"
        )
        .await,
        0,
        "{version}: chunks naming a resume of someone else"
    );
    assert_eq!(
        count(
            conn,
            "SELECT count(*) FROM resume_chunks WHERE NOT metadata ? 'legacy_user_id' \
               OR (metadata ? 'resume_id') <> (metadata ? 'legacy_resume_id')"
        )
        .await,
        0,
        "{version}: original values kept"
    );
    // Every chunk records its model: v0's is the app's first one.
    let model = if version == "v0" {
        r#"{"name": "text-embedding-004", "dimensions": 768}"#
    } else {
        r#"{"name": "gemini-embedding-001", "dimensions": 768}"#
    };
    assert_eq!(
        count(
            conn,
            &format!(
                "SELECT count(*) FROM resume_chunks \
                 WHERE metadata->'embedding_model' IS DISTINCT FROM '{model}'::jsonb"
            )
        )
        .await,
        0,
        "{version}: chunks without the stamp {model}"
    );
    let serial = !matches!(version, "v0" | "v1");
    assert_eq!(
        count(
            conn,
            "SELECT count(*) FROM resume_chunks WHERE metadata ? 'legacy_id' \
               AND metadata ? 'legacy_created_at'"
        )
        .await,
        if serial {
            tables["resume_chunks"]["imported"].as_i64().unwrap()
        } else {
            0
        },
        "{version}: serial ids and created_at kept"
    );
    // The id map covers every imported profile, preference and resume.
    let mapped = ["user_profiles", "user_preferences", "resumes"]
        .iter()
        .filter_map(|t| tables.get(*t))
        .map(|t| t["imported"].as_i64().unwrap())
        .sum::<i64>();
    assert_eq!(count(conn, "SELECT count(*) FROM legacy_ids").await, mapped);

    // The target is exactly what the migrations make.
    let verify = ok(target.url(), &["verify"]);
    assert!(
        verify.contains("OK: the database matches the migrations"),
        "{verify}"
    );

    // The source was only read.
    assert_same_schema(
        &schema_dump(source.url()),
        &schema_before,
        "source after the import",
    );
    assert_eq!(
        data_md5(source.conn()).await,
        data_before,
        "{version}: source data changed"
    );
    (source, target, report)
}

#[tokio::test]
async fn v0_imports_with_every_row_accounted_for() {
    check_version("v0").await;
}

#[tokio::test]
async fn v1_imports_with_every_row_accounted_for() {
    check_version("v1").await;
}

#[tokio::test]
async fn v2_imports_with_every_row_accounted_for() {
    let (source, _, _) = check_version("v2").await;
    naive_timestamps_are_read_in_the_source_servers_zone(&source).await;
}

#[tokio::test]
async fn v3_imports_with_every_row_accounted_for() {
    let (source, target, report) = check_version("v3").await;
    v3_edge_cases_are_normalized_as_documented(&source, &target, &report).await;
}

#[tokio::test]
async fn v4_imports_with_every_row_accounted_for() {
    check_version("v4").await;
}

#[tokio::test]
async fn v5_imports_with_every_row_accounted_for() {
    check_version("v5").await;
}

/// The normalization of `(table, legacy_id, column)` in the report.
fn normalization<'a>(report: &'a Json, table: &str, id: i64, column: &str) -> &'a Json {
    report["normalizations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["table"] == table && n["legacy_id"] == id && n["column"] == column)
        .unwrap_or_else(|| panic!("no normalization of {table} {id} {column}"))
}

/// The target value of a column of the row that had `legacy_id`.
async fn target_value(db: &TestDatabase, table: &str, id: i64, expr: &str) -> String {
    strings(
        db.conn(),
        &format!(
            "SELECT coalesce(({expr})::text, 'NULL') FROM {table} t JOIN legacy_ids l \
               ON l.table_name = '{table}' AND l.id = t.id WHERE l.legacy_id = {id}"
        ),
    )
    .await
    .pop()
    .unwrap_or_else(|| panic!("{table} {id} not imported"))
}

/// The outcome of v3's edge cases (the fixtures' README lists them).
async fn v3_edge_cases_are_normalized_as_documented(
    source: &TestDatabase,
    target: &TestDatabase,
    report: &Json,
) {
    let report = report.clone();
    let t = target;

    // Profiles: '' e-mail -> NULL, NFC uid (its NFD twin's NFC spelling is
    // profile 16, excluded), NULL timestamps.
    assert_eq!(
        normalization(&report, "user_profiles", 3, "email")["after"],
        Json::Null
    );
    assert_eq!(target_value(t, "user_profiles", 3, "email").await, "NULL");
    assert_eq!(
        target_value(
            t,
            "user_profiles",
            7,
            "firebase_uid = normalize(firebase_uid, NFC)"
        )
        .await,
        "true"
    );
    assert_eq!(
        normalization(&report, "user_profiles", 8, "created_at")["after"],
        report["import_time"]
    );
    assert_eq!(
        target_value(t, "user_profiles", 9, "updated_at = created_at").await,
        "true"
    );
    // Timestamps are the source's wall clock in its zone (UTC here).
    assert_eq!(
        target_value(t, "user_profiles", 1, "created_at AT TIME ZONE 'UTC'").await,
        "2025-10-20 09:12:44.512"
    );

    // Preferences: invalid values -> defaults, case folded, languages
    // cleaned, NULL languages -> '{}'; valid legacy values carried.
    assert_eq!(
        target_value(t, "user_preferences", 4, "difficulty").await,
        "medium"
    );
    assert_eq!(
        target_value(t, "user_preferences", 4, "duration").await,
        "30"
    );
    assert_eq!(
        target_value(t, "user_preferences", 4, "theme").await,
        "system"
    );
    assert_eq!(
        target_value(t, "user_preferences", 8, "difficulty").await,
        "hard"
    );
    assert_eq!(
        target_value(t, "user_preferences", 8, "theme").await,
        "dark"
    );
    assert_eq!(
        target_value(t, "user_preferences", 6, "languages").await,
        "{Rust}"
    );
    assert_eq!(
        target_value(t, "user_preferences", 7, "cardinality(languages)").await,
        "20"
    );
    assert_eq!(
        target_value(t, "user_preferences", 2, "languages").await,
        "{}"
    );
    assert_eq!(
        target_value(t, "user_preferences", 2, "theme").await,
        "light"
    );
    assert_eq!(
        target_value(t, "user_preferences", 10, "languages").await,
        r#"{C++,C#,F#,Objective-C,"shell, bash"}"#
    );
    assert_eq!(
        normalization(&report, "user_preferences", 7, "duration")["before"],
        500
    );

    // Resumes: titles and file names derived, sizes from the bytes, one
    // primary per user, bytes kept as they were (even when not a PDF).
    assert_eq!(target_value(t, "resumes", 3, "title").await, "bob_resume");
    assert_eq!(
        target_value(t, "resumes", 12, "file_name").await,
        "Eve_Martin.pdf"
    );
    assert_eq!(
        target_value(t, "resumes", 4, "file_size = octet_length(file_data)").await,
        "true"
    );
    assert_eq!(target_value(t, "resumes", 5, "file_size").await, "752");
    assert_eq!(target_value(t, "resumes", 2, "file_size").await, "48213");
    assert_eq!(target_value(t, "resumes", 10, "is_primary").await, "false");
    assert_eq!(target_value(t, "resumes", 11, "is_primary").await, "true");
    assert_eq!(target_value(t, "resumes", 12, "is_primary").await, "false");
    assert_eq!(target_value(t, "resumes", 1, "is_primary").await, "true");
    assert!(
        normalization(&report, "resumes", 10, "is_primary")["rule"]
            .as_str()
            .unwrap()
            .contains("resume 11")
    );
    let source_pdf = strings(
        source.conn(),
        "SELECT encode(file_data, 'hex') FROM resumes WHERE id = 9",
    )
    .await;
    assert_eq!(
        target_value(t, "resumes", 9, "encode(file_data, 'hex')").await,
        source_pdf[0],
        "non-PDF bytes are kept byte for byte"
    );
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("file_data is not a PDF"), "{warnings}");
    assert!(warnings.contains("old app server's disk"), "{warnings}");
    // Bob's chunk without embedding is kept (searches skip it), with a note.
    let no_embedding: Vec<&Json> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["message"].as_str().unwrap().starts_with("no embedding"))
        .collect();
    assert_eq!(no_embedding.len(), 1, "{warnings}");
    assert_eq!(no_embedding[0]["legacy_id"], 34);
    assert_eq!(
        count(
            t.conn(),
            "SELECT count(*) FROM resume_chunks WHERE embedding IS NULL \
               AND (metadata ->> 'legacy_id')::int = 34"
        )
        .await,
        1
    );

    // Chunks: alice's /new-route chunks are hers without a resume; chunk
    // metadata keeps every original key and value.
    let alice = target_value(t, "user_profiles", 1, "t.id").await;
    assert_eq!(
        count(
            t.conn(),
            &format!(
                "SELECT count(*) FROM resume_chunks WHERE metadata ->> 'user_id' = '{alice}' \
                   AND NOT metadata ? 'resume_id'"
            )
        )
        .await,
        3
    );
    let meta = strings(
        t.conn(),
        "SELECT metadata::text FROM resume_chunks WHERE (metadata ->> 'legacy_id')::int = 1",
    )
    .await;
    let meta: Json = serde_json::from_str(&meta[0]).unwrap();
    assert_eq!(meta["legacy_user_id"], "mXq7Lr2VbN9sT4kW1yZc8Hd3PfE6");
    assert_eq!(meta["legacy_resume_id"], 1);
    assert_eq!(meta["legacy_chunk_index"], 0);
    assert_eq!(meta["chunk_index"], 0);
    assert_eq!(meta["legacy_created_at"], "2025-10-20T09:15:06.818000Z");
    assert_eq!(meta["file_name"], "Alice_Johnson_Resume_2025.pdf");
    assert_eq!(meta["pdf"]["info"]["Author"], "Alice Johnson");
    assert_eq!(meta["user_id"], alice.as_str());
}

/// One v3 source for everything that must leave a target as it was: a dry
/// run, a failure midway, a target with rows, bad options, an unknown
/// shape (last: it alters the source).
#[tokio::test]
async fn dry_runs_failures_and_refusals_leave_the_target_as_it_was() {
    let source = legacy("v3").await;

    // A dry run into an empty database: not even migrated.
    let target = TestDatabase::empty().await;
    let before = schema_dump(target.url());
    let (out, dry) = import(&target, &source, &["--dry-run"], "dry");
    assert!(out.status.success(), "{}", text(&out));
    let dry = dry.unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["committed"], false);
    assert_eq!(dry["tables"]["resume_chunks"]["read"], 32);
    assert_eq!(dry["tables"]["resume_chunks"]["imported"], 28);
    assert!(dry["checksums"]["resume_chunks"]["source"].is_string());
    assert!(dry["checksums"]["resume_chunks"]["target"].is_null());
    assert!(
        dry["migrations_applied"][0]
            .as_str()
            .unwrap()
            .ends_with("(would be applied)")
    );
    assert!(
        text(&out).contains("Dry run: nothing was written"),
        "{}",
        text(&out)
    );
    assert_same_schema(&schema_dump(target.url()), &before, "dry run");
    assert!(applied(target.conn()).await.is_empty());

    // A zone PostgreSQL does not know.
    let (out, _) = import(
        &target,
        &source,
        &["--source-timezone", "Mars/Olympus_Mons"],
        "tz",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("Mars/Olympus_Mons"), "{}", text(&out));
    assert_same_schema(&schema_dump(target.url()), &before, "bad zone");

    // A failure on the tenth chunk of a migrated target: profiles,
    // preferences, resumes and the id map are written in the same
    // transaction by then.
    let migrated = TestDatabase::new().await;
    migrated
        .conn()
        .execute_unprepared(
            "CREATE SEQUENCE mi_import_seen; \
             CREATE FUNCTION mi_import_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF nextval('mi_import_seen') >= 10 THEN \
                 RAISE EXCEPTION 'injected failure after 9 chunks'; END IF; \
               RETURN NEW; END $$; \
             CREATE TRIGGER mi_import_fail BEFORE INSERT ON resume_chunks \
               FOR EACH ROW EXECUTE FUNCTION mi_import_fail()",
        )
        .await
        .unwrap();
    let (out, report) = import(&migrated, &source, &[], "fail");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(report.is_none(), "no report for a failed import");
    let err = text(&out);
    for part in [
        "injected failure after 9 chunks",
        "rolled back",
        "the target holds no application rows",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
    assert_eq!(application_rows(migrated.conn()).await, 0);
    migrated
        .conn()
        .execute_unprepared("DROP TRIGGER mi_import_fail ON resume_chunks")
        .await
        .unwrap();

    // A dry run into a migrated, empty target leaves it empty.
    let before = schema_dump(migrated.url());
    let (out, _) = import(&migrated, &source, &["--dry-run"], "dry2");
    assert!(out.status.success(), "{}", text(&out));
    assert_same_schema(&schema_dump(migrated.url()), &before, "dry run");
    assert_eq!(application_rows(migrated.conn()).await, 0);

    // Once the cause of the failure is gone, the import succeeds and does
    // what the dry run said.
    let (out, real) = import(&migrated, &source, &[], "fail2");
    assert!(out.status.success(), "{}", text(&out));
    let real = real.unwrap();
    assert_eq!(real["tables"], dry["tables"]);
    assert_eq!(
        real["normalizations"].as_array().unwrap().len(),
        dry["normalizations"].as_array().unwrap().len()
    );
    assert_eq!(
        real["checksums"]["resume_chunks"]["source"],
        dry["checksums"]["resume_chunks"]["source"]
    );

    // ... and a second import into the same target is refused.
    let before = schema_dump(migrated.url());
    let rows = application_rows(migrated.conn()).await;
    let (out, report) = import(&migrated, &source, &[], "nonempty");
    assert_eq!(out.status.code(), Some(1));
    assert!(report.is_none());
    let err = text(&out);
    assert!(
        err.contains("already holds application rows: user_profiles (14 rows)"),
        "{err}"
    );
    assert!(err.contains("Import into a new, empty database"), "{err}");
    assert_same_schema(&schema_dump(migrated.url()), &before, "refused import");
    assert_eq!(application_rows(migrated.conn()).await, rows);

    // Importing a database into itself; this project's own schema as source.
    let (out, _) = import(&source, &source, &[], "self");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("the source and the target are the same database"));
    let (out, _) = import(&target, &migrated, &[], "ours");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("this project's own schema"),
        "{}",
        text(&out)
    );

    // A v3 database whose resumes table was changed by hand.
    source
        .conn()
        .execute_unprepared("ALTER TABLE resumes ALTER COLUMN file_name TYPE text")
        .await
        .unwrap();
    let (out, _) = import(&target, &source, &[], "shape");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out);
    for part in [
        "matches no version of the TypeScript app's database; it is closest to v3",
        "column resumes.file_name is text NOT NULL, v3 has character varying(255) NOT NULL",
        "Nothing was written",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
    assert!(tables(target.conn()).await.is_empty());
    assert!(applied(target.conn()).await.is_empty());
}

/// The zone of the app's naive timestamps comes from the source server
/// (here a per-database setting), unless given.
async fn naive_timestamps_are_read_in_the_source_servers_zone(source: &TestDatabase) {
    source
        .conn()
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{}\" SET TimeZone = 'America/New_York'",
            source.name()
        ))
        .await
        .unwrap();
    let target = TestDatabase::new().await;
    let model = [
        "--embedding-model",
        "gemini-embedding-001",
        "--embedding-dimensions",
        "768",
    ];
    let (out, report) = import(&target, source, &model, "zone");
    assert!(out.status.success(), "{}", text(&out));
    let report = report.unwrap();
    assert_eq!(report["source_timezone"]["zone"], "America/New_York");
    assert!(
        report["source_timezone"]["determined_by"]
            .as_str()
            .unwrap()
            .contains("ALTER DATABASE"),
        "{report}"
    );
    // 09:12:44.512 in New York (EDT, UTC-4) on 2025-10-20.
    assert_eq!(
        target_value(&target, "user_profiles", 1, "created_at AT TIME ZONE 'UTC'").await,
        "2025-10-20 13:12:44.512"
    );
    // The chunks' created_at too.
    let created = strings(
        target.conn(),
        "SELECT metadata ->> 'legacy_created_at' FROM resume_chunks \
         WHERE (metadata ->> 'legacy_id')::int = 1",
    )
    .await;
    assert_eq!(created, ["2025-10-20T13:15:06.818000Z"]);

    // An explicit zone wins.
    let target = TestDatabase::new().await;
    let mut args = vec!["--source-timezone", "UTC"];
    args.extend(model);
    let (out, report) = import(&target, source, &args, "zone2");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        report.unwrap()["source_timezone"]["determined_by"],
        "--source-timezone"
    );
    assert_eq!(
        target_value(&target, "user_profiles", 1, "created_at AT TIME ZONE 'UTC'").await,
        "2025-10-20 09:12:44.512"
    );
}

#[tokio::test]
async fn up_on_a_migrated_or_empty_database_is_unaffected_by_the_check() {
    // Adopting identical objects: a database whose bookkeeping was lost.
    let db = TestDatabase::new().await;
    db.conn()
        .execute_unprepared("DELETE FROM seaql_migrations")
        .await
        .unwrap();
    let before = schema_dump(db.url());
    ok(db.url(), &["up"]);
    assert_eq!(applied(db.conn()).await, *ALL);
    assert_same_schema(&schema_dump(db.url()), &before, "adopted as it was");

    // One different object is enough to refuse, and it is named.
    let db = TestDatabase::new().await;
    db.conn()
        .execute_unprepared(
            "DELETE FROM seaql_migrations WHERE version = 'm005_legacy_import'; \
             ALTER TABLE legacy_ids ALTER COLUMN legacy_id TYPE integer",
        )
        .await
        .unwrap();
    let err = fails(db.url(), &["up"]);
    assert!(
        err.contains(
            "column legacy_ids.legacy_id (m005_legacy_import): found integer NOT NULL, the \
             migration creates bigint NOT NULL"
        ),
        "{err}"
    );
    assert!(err.contains("belong to something else"), "{err}");
    let without_m005: Vec<&str> = ALL
        .iter()
        .copied()
        .filter(|m| *m != "m005_legacy_import")
        .collect();
    assert_eq!(applied(db.conn()).await, without_m005);
}
