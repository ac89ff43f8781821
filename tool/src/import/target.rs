//! Writing the target: everything in one transaction, tables loaded with
//! binary `COPY`, checked before commit.

use chrono::{DateTime, Utc};
use sea_orm_migration::sea_orm::DatabaseConnection;
use sea_orm_migration::sea_orm::sqlx::postgres::{PgConnection, PgCopyIn};
use sea_orm_migration::sea_orm::sqlx::{self, AssertSqlSafe, Row};
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

use super::ImportError;
use super::copy::Encoder;
use super::plan::{PreferencesRow, ProfileRow, ResumeRow};

/// The tables whose rows make a database "not empty" for the import.
pub const APPLICATION_TABLES: [&str; 5] = [
    "user_profiles",
    "user_preferences",
    "resumes",
    "resume_chunks",
    "legacy_ids",
];

/// Order-independent aggregate of row hashes `h`.
pub const AGGREGATE: &str = "coalesce(md5(string_agg(h, '' ORDER BY h)), md5(''))";

/// The hash of one chunk (`c`): its legacy id, text and embedding (binary,
/// `vector_send`, so that pgvector versions with different text output
/// agree).
pub fn chunk_hash(key: &str) -> String {
    format!(
        "md5({key} || ':' || coalesce(md5(c.text), '-') || ':' || \
         coalesce(md5(vector_send(c.embedding)), '-'))"
    )
}

/// The hash of one resume (`r`): its legacy id, content and PDF bytes.
pub fn resume_hash(key: &str) -> String {
    format!(
        "md5({key} || ':' || coalesce(md5(r.content), '-') || ':' || \
         coalesce(md5(r.file_data), '-'))"
    )
}

pub(crate) fn failed(what: &str) -> impl FnOnce(sqlx::Error) -> ImportError + '_ {
    move |e| ImportError::Target {
        what: what.to_owned(),
        message: e
            .as_database_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
    }
}

/// Application tables of the target that have rows, with their counts
/// (counting stops at 100,001). Tables that do not exist yet are empty.
///
/// # Errors
/// Database errors.
pub async fn application_rows<C: ConnectionTrait>(
    db: &C,
) -> Result<Vec<(String, i64)>, ImportError> {
    let mut out = Vec::new();
    for table in APPLICATION_TABLES {
        let exists = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT to_regclass(quote_ident(current_schema()) || '.{table}') IS NOT NULL \
                     AS found"
                ),
            ))
            .await
            .map_err(|e| ImportError::Target {
                what: "checking that the target is empty".into(),
                message: e.to_string(),
            })?
            .and_then(|r| r.try_get::<bool>("", "found").ok())
            .unwrap_or(false);
        if !exists {
            continue;
        }
        let rows = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT count(*) AS n FROM (SELECT 1 FROM {table} LIMIT 100001) s"),
            ))
            .await
            .map_err(|e| ImportError::Target {
                what: "checking that the target is empty".into(),
                message: e.to_string(),
            })?
            .and_then(|r| r.try_get::<i64>("", "n").ok())
            .unwrap_or(0);
        if rows > 0 {
            out.push((table.to_owned(), rows));
        }
    }
    Ok(out)
}

/// `postgres://user@host:port/database` of a connection (no password).
pub fn describe(db: &DatabaseConnection) -> String {
    let options = db.get_postgres_connection_pool().connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or(options.get_username())
    )
}

/// Starts a binary `COPY` into `table (columns)`.
pub async fn copy_in<'c>(
    tx: &'c mut PgConnection,
    table: &str,
    columns: &str,
) -> Result<PgCopyIn<&'c mut PgConnection>, ImportError> {
    tx.copy_in_raw(&format!(
        "COPY {table} ({columns}) FROM STDIN (FORMAT binary)"
    ))
    .await
    .map_err(failed("starting COPY ... FROM STDIN"))
}

/// Sends a full piece of a `COPY`.
pub async fn send(
    copy: &mut PgCopyIn<&mut PgConnection>,
    enc: &mut Encoder,
) -> Result<(), ImportError> {
    copy.send(enc.take())
        .await
        .map_err(failed("sending COPY data"))?;
    Ok(())
}

/// Sends the rest and ends a `COPY`; returns the rows the server counted.
pub async fn finish(
    mut copy: PgCopyIn<&mut PgConnection>,
    enc: Encoder,
) -> Result<u64, ImportError> {
    copy.send(enc.finish())
        .await
        .map_err(failed("sending COPY data"))?;
    copy.finish().await.map_err(failed("finishing COPY"))
}

/// `user_profiles`.
///
/// # Errors
/// Database errors.
pub async fn write_profiles(
    tx: &mut PgConnection,
    rows: &[ProfileRow],
) -> Result<u64, ImportError> {
    let mut copy = copy_in(
        tx,
        "user_profiles",
        "id, firebase_uid, email, display_name, photo_url, created_at, updated_at",
    )
    .await?;
    let mut enc = Encoder::new();
    for r in rows {
        enc.row(7)
            .uuid(&r.id)
            .text(Some(&r.firebase_uid))
            .text(r.email.as_deref())
            .text(r.display_name.as_deref())
            .text(r.photo_url.as_deref())
            .timestamptz(&r.created_at)
            .timestamptz(&r.updated_at);
        if enc.is_full() {
            send(&mut copy, &mut enc).await?;
        }
    }
    finish(copy, enc).await
}

/// `user_preferences`.
///
/// # Errors
/// Database errors.
pub async fn write_preferences(
    tx: &mut PgConnection,
    rows: &[PreferencesRow],
) -> Result<u64, ImportError> {
    let mut copy = copy_in(
        tx,
        "user_preferences",
        "id, user_id, difficulty, duration, languages, theme, created_at, updated_at",
    )
    .await?;
    let mut enc = Encoder::new();
    for r in rows {
        enc.row(8)
            .uuid(&r.id)
            .uuid(&r.user_id)
            .text(Some(&r.difficulty))
            .int4(r.duration)
            .text_array(&r.languages)
            .text(Some(&r.theme))
            .timestamptz(&r.created_at)
            .timestamptz(&r.updated_at);
        if enc.is_full() {
            send(&mut copy, &mut enc).await?;
        }
    }
    finish(copy, enc).await
}

/// Columns of the resumes `COPY`; [`encode_resume`] writes them.
pub const RESUME_COLUMNS: &str = "id, user_id, title, file_name, file_path, file_size, content, \
                                  created_at, updated_at, file_data, is_primary";

/// One resume row with its PDF bytes (as read from the source).
pub fn encode_resume(enc: &mut Encoder, r: &ResumeRow, file_data: Option<&[u8]>) {
    enc.row(11)
        .uuid(&r.id)
        .uuid(&r.user_id)
        .text(Some(&r.title))
        .text(Some(&r.file_name))
        .text(r.file_path.as_deref())
        .int8(r.file_size)
        .text(r.content.as_deref())
        .timestamptz(&r.created_at)
        .timestamptz(&r.updated_at)
        .raw(file_data)
        .bool(r.is_primary);
}

/// `legacy_ids`.
///
/// # Errors
/// Database errors.
pub async fn write_legacy_ids(
    tx: &mut PgConnection,
    rows: &[(&'static str, i64, Uuid)],
    imported_at: &DateTime<Utc>,
) -> Result<u64, ImportError> {
    let mut copy = copy_in(tx, "legacy_ids", "table_name, legacy_id, id, imported_at").await?;
    let mut enc = Encoder::new();
    for (table, legacy_id, id) in rows {
        enc.row(4)
            .text(Some(table))
            .int8(*legacy_id)
            .uuid(id)
            .timestamptz(imported_at);
        if enc.is_full() {
            send(&mut copy, &mut enc).await?;
        }
    }
    finish(copy, enc).await
}

/// The HNSW indexes of `resume_chunks`: `(name, definition)`.
///
/// # Errors
/// Database errors.
pub async fn hnsw_indexes(tx: &mut PgConnection) -> Result<Vec<(String, String)>, ImportError> {
    let rows = sqlx::query(
        "SELECT quote_ident(c.relname) AS name, pg_get_indexdef(i.indexrelid) AS def \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_am a ON a.oid = c.relam \
         WHERE i.indrelid = (quote_ident(current_schema()) || '.resume_chunks')::regclass \
           AND a.amname = 'hnsw' ORDER BY 1",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(failed("listing the HNSW indexes"))?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("name")
                    .map_err(failed("listing the HNSW indexes"))?,
                r.try_get("def")
                    .map_err(failed("listing the HNSW indexes"))?,
            ))
        })
        .collect()
}

/// Runs `sql` in the transaction.
///
/// # Errors
/// Database errors, described as `what`.
pub async fn exec(tx: &mut PgConnection, sql: &str, what: &str) -> Result<(), ImportError> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(&mut *tx)
        .await
        .map_err(failed(what))?;
    Ok(())
}

/// A count or checksum query returning `(n, sum)`.
///
/// # Errors
/// Database errors.
pub async fn checksum(tx: &mut PgConnection, sql: &str) -> Result<(i64, String), ImportError> {
    let row = sqlx::query(AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut *tx)
        .await
        .map_err(failed("computing a checksum"))?;
    Ok((
        row.try_get("n").map_err(failed("computing a checksum"))?,
        row.try_get("sum").map_err(failed("computing a checksum"))?,
    ))
}

/// `count(*)` of a table in the transaction.
///
/// # Errors
/// Database errors.
pub async fn count(tx: &mut PgConnection, table: &str) -> Result<i64, ImportError> {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut *tx)
        .await
        .map_err(failed("counting imported rows"))
}
