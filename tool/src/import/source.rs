//! Reading the legacy database: one connection, one `REPEATABLE READ, READ
//! ONLY` transaction for everything (catalog, rows, `COPY ... TO STDOUT`
//! streams, checksums), so the import sees one consistent snapshot and
//! cannot write to the source.
//!
//! The connection is a sqlx pool of exactly one connection, also wrapped as
//! a sea-orm connection (for [`Catalog::snapshot`]): every statement, sqlx
//! or sea-orm, runs on the same session, inside the transaction opened with
//! a plain `BEGIN`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pgconn::DbUrl;
use sea_orm_migration::sea_orm::sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sea_orm_migration::sea_orm::sqlx::{self, AssertSqlSafe, Row};
use sea_orm_migration::sea_orm::{DatabaseConnection, SqlxPostgresConnector};
use serde_json::Value as Json;

use super::ImportError;
use super::plan::{LegacyPreferences, LegacyProfile, LegacyResume};
use super::report::{SourceTimeZone, UnownedTable};
use migration::catalog::Catalog;
use migration::detect::ChunkLayout;

/// The open source snapshot.
pub struct Source {
    pool: PgPool,
    orm: DatabaseConnection,
    /// The URL (for messages).
    pub url: DbUrl,
    /// How naive timestamps are read.
    pub zone: SourceTimeZone,
    /// `server_encoding` is UTF8 (needed for `normalize()`).
    utf8: bool,
}

fn read_failed(what: &str) -> impl FnOnce(sqlx::Error) -> ImportError + '_ {
    move |e| ImportError::source(what, e)
}

impl Source {
    /// Connects, settles the time zone, and opens the snapshot.
    ///
    /// # Errors
    /// [`ImportError::Source`] when the source cannot be reached or read,
    /// [`ImportError::TimeZone`] for an unknown `zone`.
    pub async fn open(url: &DbUrl, zone: Option<&str>) -> Result<Self, ImportError> {
        let options = url
            .connect_options()
            .application_name("mockinterview-import (read-only)");
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| ImportError::Source {
                what: format!("connecting to the source {}", url.target()),
                message: e.to_string(),
            })?;
        let zone = time_zone(&pool, zone).await?;
        let utf8: String = sqlx::query_scalar("SELECT current_setting('server_encoding')")
            .fetch_one(&pool)
            .await
            .map_err(read_failed("reading server_encoding"))?;
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&pool)
            .await
            .map_err(read_failed("opening the snapshot"))?;
        Ok(Self {
            orm: SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone()),
            pool,
            url: url.clone(),
            zone,
            utf8: utf8.eq_ignore_ascii_case("UTF8"),
        })
    }

    /// Ends the snapshot and closes the connection.
    pub async fn close(self) {
        let _ = sqlx::raw_sql("ROLLBACK").execute(&self.pool).await;
        self.pool.close().await;
    }

    /// The schema's catalog.
    ///
    /// # Errors
    /// Database errors.
    pub async fn catalog(&self) -> Result<Catalog, ImportError> {
        Catalog::snapshot(&self.orm)
            .await
            .map_err(|e| ImportError::Source {
                what: "reading the catalog".into(),
                message: e.to_string(),
            })
    }

    /// `normalize(expr, NFC)` when the server can, else `expr`.
    fn nfc(&self, expr: &str) -> String {
        if self.utf8 {
            format!("normalize({expr}, NFC)")
        } else {
            expr.to_owned()
        }
    }

    /// The zone as an SQL literal (validated when opened).
    pub fn zone_literal(&self) -> String {
        format!("'{}'", self.zone.zone.replace('\'', "''"))
    }

    /// `current_database()@pg_postmaster_start_time()`: names one database
    /// of one running server, whatever host name reaches it.
    ///
    /// # Errors
    /// Database errors.
    pub async fn identity(&self) -> Result<String, ImportError> {
        sqlx::query_scalar(
            "SELECT current_database()::text || '@' || pg_postmaster_start_time()::text",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(read_failed("identifying the source"))
    }

    /// Row counts of `tables` (quoted identifiers).
    ///
    /// # Errors
    /// Database errors.
    pub async fn counts(&self, tables: &[String]) -> Result<Vec<UnownedTable>, ImportError> {
        let mut out = Vec::new();
        for table in tables {
            let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT count(*) FROM \"{}\"",
                table.replace('"', "\"\"")
            )))
            .fetch_one(&self.pool)
            .await
            .map_err(read_failed("counting rows"))?;
            out.push(UnownedTable {
                table: table.clone(),
                rows,
            });
        }
        Ok(out)
    }

    /// Views of the schema.
    ///
    /// # Errors
    /// Database errors.
    pub async fn views(&self) -> Result<Vec<String>, ImportError> {
        sqlx::query_scalar(
            "SELECT viewname::text FROM pg_views WHERE schemaname = current_schema() ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(read_failed("listing views"))
    }

    /// Whether `seaql_migrations` exists (an earlier `migration up` ran here).
    ///
    /// # Errors
    /// Database errors.
    pub async fn has_seaql_migrations(&self) -> Result<bool, ImportError> {
        sqlx::query_scalar(
            "SELECT to_regclass(quote_ident(current_schema()) || '.seaql_migrations') IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(read_failed("looking for seaql_migrations"))
    }

    /// v0's data check: how many chunks there are, and how many name a
    /// resume / a user / a chunk index (written by the app from commit
    /// 86f8fc7 on, which embedded with `gemini-embedding-001`).
    ///
    /// # Errors
    /// Database errors.
    pub async fn v0_metadata_counts(&self) -> Result<(i64, i64, i64, i64), ImportError> {
        let row = sqlx::query(
            "SELECT count(*) AS total, \
                    count(*) FILTER (WHERE metadata ? 'resume_id') AS with_resume, \
                    count(*) FILTER (WHERE metadata ? 'user_id') AS with_user, \
                    count(*) FILTER (WHERE metadata ? 'chunk_index') AS with_index \
             FROM resume_chunks",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(read_failed("reading chunk metadata"))?;
        let get = |c: &str| row.try_get::<i64, _>(c).unwrap_or(0);
        Ok((
            get("total"),
            get("with_resume"),
            get("with_user"),
            get("with_index"),
        ))
    }

    /// Every profile.
    ///
    /// # Errors
    /// Database errors.
    pub async fn profiles(&self) -> Result<Vec<LegacyProfile>, ImportError> {
        let sql = format!(
            "SELECT id, firebase_uid::text AS uid, {nfc} AS uid_nfc, email::text AS email, \
                    display_name::text AS display_name, photo_url, \
                    created_at AT TIME ZONE $1 AS created_at, \
                    updated_at AT TIME ZONE $1 AS updated_at, to_jsonb(p) AS original \
             FROM user_profiles p ORDER BY id",
            nfc = self.nfc("firebase_uid::text")
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&self.zone.zone)
            .fetch_all(&self.pool)
            .await
            .map_err(read_failed("reading user_profiles"))?;
        rows.iter()
            .map(|r| {
                Ok(LegacyProfile {
                    id: get(r, "id")?,
                    uid: get(r, "uid")?,
                    uid_nfc: get(r, "uid_nfc")?,
                    email: get(r, "email")?,
                    display_name: get(r, "display_name")?,
                    photo_url: get(r, "photo_url")?,
                    created_at: get(r, "created_at")?,
                    updated_at: get(r, "updated_at")?,
                    original: get(r, "original")?,
                })
            })
            .collect()
    }

    /// Every preferences row.
    ///
    /// # Errors
    /// Database errors.
    pub async fn preferences(&self) -> Result<Vec<LegacyPreferences>, ImportError> {
        let rows = sqlx::query(
            "SELECT id, user_id, interview_difficulty::text AS difficulty, \
                    interview_duration AS duration, preferred_languages AS languages, \
                    theme::text AS theme, \
                    created_at AT TIME ZONE $1 AS created_at, \
                    updated_at AT TIME ZONE $1 AS updated_at, to_jsonb(p) AS original \
             FROM user_preferences p ORDER BY id",
        )
        .bind(&self.zone.zone)
        .fetch_all(&self.pool)
        .await
        .map_err(read_failed("reading user_preferences"))?;
        rows.iter()
            .map(|r| {
                Ok(LegacyPreferences {
                    id: get(r, "id")?,
                    user_id: get(r, "user_id")?,
                    difficulty: get(r, "difficulty")?,
                    duration: get(r, "duration")?,
                    languages: get(r, "languages")?,
                    theme: get(r, "theme")?,
                    created_at: get(r, "created_at")?,
                    updated_at: get(r, "updated_at")?,
                    original: get(r, "original")?,
                })
            })
            .collect()
    }

    /// Every resume, without its PDF bytes.
    ///
    /// # Errors
    /// Database errors.
    pub async fn resumes(&self) -> Result<Vec<LegacyResume>, ImportError> {
        let rows = sqlx::query(
            "SELECT r.id, r.user_id, r.title::text AS title, r.file_name::text AS file_name, \
                    r.file_path, r.file_size, r.content, \
                    octet_length(r.file_data)::bigint AS data_len, \
                    encode(substring(r.file_data FROM 1 FOR 8), 'hex') AS data_head, \
                    r.is_primary, \
                    r.created_at AT TIME ZONE $1 AS created_at, \
                    r.updated_at AT TIME ZONE $1 AS updated_at, \
                    CASE WHEN coalesce(btrim(r.file_name), '') = '' THEN \
                      (SELECT c.metadata ->> 'file_name' FROM resume_chunks c \
                        WHERE c.metadata @> jsonb_build_object('resume_id', r.id) \
                          AND coalesce(c.metadata ->> 'file_name', '') <> '' \
                        ORDER BY c.metadata ->> 'file_name' LIMIT 1) END AS chunk_file_name, \
                    CASE WHEN r.user_id IS NULL THEN \
                      array(SELECT DISTINCT c.metadata ->> 'user_id' FROM resume_chunks c \
                             WHERE c.metadata @> jsonb_build_object('resume_id', r.id) \
                               AND c.metadata ? 'user_id' ORDER BY 1) \
                    ELSE '{}'::text[] END AS chunk_user_ids, \
                    to_jsonb(r) - 'file_data' AS original \
             FROM resumes r ORDER BY r.id",
        )
        .bind(&self.zone.zone)
        .fetch_all(&self.pool)
        .await
        .map_err(read_failed("reading resumes"))?;
        rows.iter()
            .map(|r| {
                Ok(LegacyResume {
                    id: get(r, "id")?,
                    user_id: get(r, "user_id")?,
                    title: get(r, "title")?,
                    file_name: get(r, "file_name")?,
                    file_path: get(r, "file_path")?,
                    file_size: get(r, "file_size")?,
                    content: get(r, "content")?,
                    data_len: get(r, "data_len")?,
                    data_head: get(r, "data_head")?,
                    is_primary: get(r, "is_primary")?,
                    created_at: get(r, "created_at")?,
                    updated_at: get(r, "updated_at")?,
                    chunk_file_name: get(r, "chunk_file_name")?,
                    chunk_user_ids: get(r, "chunk_user_ids")?,
                    original: get(r, "original")?,
                })
            })
            .collect()
    }

    /// `to_jsonb` of the rows of `table` whose integer id is in `ids`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn originals_by_int(
        &self,
        table: &str,
        ids: &[i32],
    ) -> Result<Vec<(Json, Json)>, ImportError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT to_jsonb(t.id) AS id, to_jsonb(t) AS row FROM \"{table}\" t \
             WHERE t.id = ANY($1) ORDER BY t.id"
        )))
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(read_failed("reading excluded rows"))?;
        rows.iter()
            .map(|r| Ok((get(r, "id")?, get(r, "row")?)))
            .collect()
    }

    /// `to_jsonb` of the chunks whose uuid id is in `ids`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn chunk_originals_by_uuid(
        &self,
        ids: &[uuid::Uuid],
    ) -> Result<Vec<(Json, Json)>, ImportError> {
        let rows = sqlx::query(
            "SELECT to_jsonb(t.id) AS id, to_jsonb(t) AS row FROM resume_chunks t \
             WHERE t.id = ANY($1) ORDER BY t.id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(read_failed("reading excluded chunks"))?;
        rows.iter()
            .map(|r| Ok((get(r, "id")?, get(r, "row")?)))
            .collect()
    }

    /// `COPY (SELECT id, file_data FROM resumes ORDER BY id) TO STDOUT`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn copy_pdfs(
        &self,
    ) -> Result<futures_util::stream::BoxStream<'static, sqlx::Result<bytes::Bytes>>, ImportError>
    {
        self.copy_out(
            "COPY (SELECT id, file_data FROM resumes ORDER BY id) TO STDOUT (FORMAT binary)",
        )
        .await
    }

    /// The chunks, as `COPY` rows: `id, text, metadata, embedding,
    /// vector_dims, nfc(user_id)` and, for the serial layout, `resume_id,
    /// chunk_index, created_at` (in the source's zone).
    ///
    /// # Errors
    /// Database errors.
    pub async fn copy_chunks(
        &self,
        layout: ChunkLayout,
    ) -> Result<futures_util::stream::BoxStream<'static, sqlx::Result<bytes::Bytes>>, ImportError>
    {
        let nfc = self.nfc("(metadata ->> 'user_id')");
        let extra = match layout {
            ChunkLayout::LangChain => String::new(),
            ChunkLayout::Serial => format!(
                ", resume_id, chunk_index, created_at AT TIME ZONE {}",
                self.zone_literal()
            ),
        };
        self.copy_out(&format!(
            "COPY (SELECT id, text, metadata, embedding, vector_dims(embedding), {nfc}{extra} \
             FROM resume_chunks ORDER BY id) TO STDOUT (FORMAT binary)"
        ))
        .await
    }

    async fn copy_out(
        &self,
        statement: &str,
    ) -> Result<futures_util::stream::BoxStream<'static, sqlx::Result<bytes::Bytes>>, ImportError>
    {
        use sqlx::postgres::PgPoolCopyExt;
        self.pool
            .copy_out_raw(statement)
            .await
            .map_err(read_failed("starting COPY ... TO STDOUT"))
    }

    /// Checksum of the chunks that were imported (all but `excluded`), as
    /// the target computes it: see [`super::target::CHUNK_HASH`].
    ///
    /// # Errors
    /// Database errors.
    pub async fn chunk_checksum(
        &self,
        layout: ChunkLayout,
        excluded_int: &[i32],
        excluded_uuid: &[uuid::Uuid],
    ) -> Result<(i64, String), ImportError> {
        let filter = match layout {
            ChunkLayout::Serial => "NOT (c.id = ANY($1::int[]))",
            ChunkLayout::LangChain => "NOT (c.id = ANY($2::uuid[]))",
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT count(*) AS n, {agg} AS sum FROM (SELECT {hash} AS h FROM resume_chunks c \
             WHERE {filter}) s",
            agg = super::target::AGGREGATE,
            hash = super::target::chunk_hash("c.id::text")
        )))
        .bind(excluded_int)
        .bind(excluded_uuid)
        .fetch_one(&self.pool)
        .await
        .map_err(read_failed("computing the chunk checksum"))?;
        Ok((get(&row, "n")?, get(&row, "sum")?))
    }

    /// Checksum of the imported resumes' content and PDF bytes.
    ///
    /// # Errors
    /// Database errors.
    pub async fn resume_checksum(&self, imported: &[i32]) -> Result<(i64, String), ImportError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT count(*) AS n, {agg} AS sum FROM (SELECT {hash} AS h FROM resumes r \
             WHERE r.id = ANY($1)) s",
            agg = super::target::AGGREGATE,
            hash = super::target::resume_hash("r.id::text")
        )))
        .bind(imported)
        .fetch_one(&self.pool)
        .await
        .map_err(read_failed("computing the resume checksum"))?;
        Ok((get(&row, "n")?, get(&row, "sum")?))
    }

    /// The version-specific evidence from the data (v0).
    pub fn v0_evidence(total: i64, with_user: i64) -> String {
        format!(
            "no chunk names a resume (metadata.resume_id), as in the v0 era; {with_user} of \
             {total} chunks name a user (metadata.user_id, written from commit c63d98c on)"
        )
    }
}

fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T, ImportError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column)
        .map_err(|e| ImportError::source(&format!("decoding column {column}"), e))
}

/// The zone the app's `CURRENT_TIMESTAMP` values were written in: the
/// explicit choice, else what the server would give a client that does not
/// set `TimeZone` (as node-postgres does not): a per-database or per-role
/// setting (`ALTER DATABASE/ROLE ... SET TimeZone`), else the configuration
/// file (readable by superusers and `pg_read_all_settings`), else UTC with a
/// warning in the report. (sqlx sets `TimeZone=UTC` on its own sessions, so
/// `SHOW TimeZone` cannot tell.)
async fn time_zone(pool: &PgPool, explicit: Option<&str>) -> Result<SourceTimeZone, ImportError> {
    let chosen = match explicit {
        Some(z) => SourceTimeZone {
            zone: z.trim().to_owned(),
            determined_by: "--source-timezone".into(),
        },
        None => detect_zone(pool).await,
    };
    // Unknown zones fail here, with PostgreSQL's own check.
    let valid: Result<DateTime<Utc>, sqlx::Error> =
        sqlx::query_scalar("SELECT timestamp '2000-01-01' AT TIME ZONE $1")
            .bind(&chosen.zone)
            .fetch_one(pool)
            .await;
    match valid {
        Ok(_) => Ok(chosen),
        Err(e) => Err(ImportError::TimeZone {
            zone: chosen.zone,
            message: e
                .as_database_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
        }),
    }
}

async fn detect_zone(pool: &PgPool) -> SourceTimeZone {
    let per_db_or_role: Option<(String, String)> = sqlx::query_as(
        "SELECT split_part(cfg, '=', 2) AS zone, \
                CASE WHEN s.setdatabase <> 0 AND s.setrole <> 0 THEN 'ALTER ROLE ... IN DATABASE ... SET TimeZone' \
                     WHEN s.setrole <> 0 THEN 'ALTER ROLE ... SET TimeZone' \
                     ELSE 'ALTER DATABASE ... SET TimeZone' END AS how \
         FROM pg_db_role_setting s, unnest(s.setconfig) AS cfg \
         WHERE lower(split_part(cfg, '=', 1)) = 'timezone' \
           AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database())) \
           AND s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = current_user)) \
         ORDER BY (s.setdatabase <> 0 AND s.setrole <> 0) DESC, (s.setrole <> 0) DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten();
    if let Some((zone, how)) = per_db_or_role {
        return SourceTimeZone {
            zone,
            determined_by: format!("{how} on the source"),
        };
    }
    let file: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
        "SELECT setting FROM pg_file_settings \
         WHERE lower(name) = 'timezone' AND error IS NULL ORDER BY seqno DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await;
    match file {
        Ok(Some(zone)) => SourceTimeZone {
            zone,
            determined_by: "the source server's configuration file (pg_file_settings)".into(),
        },
        Ok(None) => SourceTimeZone {
            zone: "GMT".into(),
            determined_by: "the source server's built-in default (no TimeZone configured)".into(),
        },
        Err(_) => SourceTimeZone {
            zone: "UTC".into(),
            determined_by: "ASSUMED: the source's configuration is not readable by this role \
                            (needs superuser or pg_read_all_settings); pass --source-timezone \
                            with the server's TimeZone (`psql -c 'SHOW TimeZone'` as the app's \
                            role shows it) if it is not UTC"
                .into(),
        },
    }
}
