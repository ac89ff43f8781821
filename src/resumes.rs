//! Resumes: metadata, extracted text, and the PDF stored in the database
//! (`resumes.file_data`) or as a path to a file stored elsewhere.
//!
//! Every function takes the owner's `user_id` and only ever touches that
//! user's rows: a resume id of another user is reported as not found.

use entity::resumes::{self, Column, Entity};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, StatementBuilder,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result, is_foreign_key_violation};
use crate::settings::Op;
use crate::store::Store;
use crate::validate::{Chars, TextRule, invalid};

/// Default limit for PDFs stored in the database: 1 MiB. Larger files belong
/// in file storage, recorded with [`PdfUpload::path`].
pub const DEFAULT_MAX_INLINE_PDF_BYTES: usize = 1024 * 1024;

/// Hard ceiling of [`PdfUpload::inline_with_limit`]: 64 MiB, whatever limit
/// the caller passes (a `bytea` value travels and is stored whole).
pub const MAX_INLINE_PDF_BYTES: usize = 64 * 1024 * 1024;

/// Every PDF starts with this signature.
pub const PDF_SIGNATURE: &[u8] = b"%PDF-";

/// Longest title, in characters (one line, not blank, not padded).
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest original file name, in bytes (the common file-system limit).
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Longest path of a PDF stored outside the database, in bytes.
pub const MAX_FILE_PATH_BYTES: usize = 1024;
/// Largest extracted text, in bytes (1 MiB: a long resume is ~50 KiB).
pub const MAX_CONTENT_BYTES: usize = 1024 * 1024;

const TITLE: TextRule = TextRule::line("title", MAX_TITLE_CHARS);
const FILE_NAME: TextRule = TextRule {
    max_chars: MAX_FILE_NAME_BYTES,
    max_bytes: MAX_FILE_NAME_BYTES,
    ..TextRule::line("file_name", MAX_FILE_NAME_BYTES)
};
const FILE_PATH: TextRule = TextRule {
    max_chars: MAX_FILE_PATH_BYTES,
    max_bytes: MAX_FILE_PATH_BYTES,
    chars: Chars::Visible,
    ..TextRule::line("file_path", MAX_FILE_PATH_BYTES)
};
const CONTENT: TextRule = TextRule {
    field: "content",
    max_chars: MAX_CONTENT_BYTES,
    max_bytes: MAX_CONTENT_BYTES,
    chars: Chars::Any,
    blank_ok: true,
    padding_ok: true,
};

/// Where a new resume's PDF goes: the bytes, stored in the database, or the
/// path of a file stored elsewhere.
///
/// Only the constructors make one, and they check the value, so a
/// `PdfUpload` in hand is always valid: inline bytes are non-empty, start
/// with `%PDF-` and are within the limit; a path is 1 to
/// [`MAX_FILE_PATH_BYTES`] bytes on one line without control or invisible
/// characters or surrounding whitespace, with a size of at least one byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdfUpload(Pdf);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pdf {
    Inline(Vec<u8>),
    Path { path: String, size_bytes: u64 },
}

impl PdfUpload {
    /// A PDF to store in the database, checked against the default 1 MiB limit.
    ///
    /// # Errors
    /// As [`PdfUpload::inline_with_limit`].
    ///
    /// ```
    /// use mockinterview_db::resumes::PdfUpload;
    /// assert!(PdfUpload::inline(b"%PDF-1.7 ...".to_vec()).is_ok());
    /// assert!(PdfUpload::inline(b"GIF89a".to_vec()).is_err());
    /// assert!(PdfUpload::inline(Vec::new()).is_err());
    /// ```
    pub fn inline(bytes: Vec<u8>) -> Result<Self> {
        Self::inline_with_limit(bytes, DEFAULT_MAX_INLINE_PDF_BYTES)
    }

    /// A PDF to store in the database, at most `max_bytes` long (and never
    /// more than [`MAX_INLINE_PDF_BYTES`]).
    ///
    /// # Errors
    /// [`Error::Validation`] (field `file_data`) when the bytes are empty, do
    /// not start with `%PDF-`, or exceed the limit (the message suggests path
    /// storage).
    pub fn inline_with_limit(bytes: Vec<u8>, max_bytes: usize) -> Result<Self> {
        let max_bytes = max_bytes.min(MAX_INLINE_PDF_BYTES);
        if bytes.is_empty() {
            return Err(invalid("file_data", "the file is empty".into()));
        }
        if !bytes.starts_with(PDF_SIGNATURE) {
            return Err(invalid(
                "file_data",
                "not a PDF: the file does not start with the %PDF- signature".into(),
            ));
        }
        if bytes.len() > max_bytes {
            return Err(invalid(
                "file_data",
                format!(
                    "the PDF is {} bytes, over the {max_bytes}-byte limit for PDFs stored in \
                     the database; store the file elsewhere and record it with PdfUpload::path",
                    bytes.len()
                ),
            ));
        }
        Ok(Self(Pdf::Inline(bytes)))
    }

    /// A PDF stored outside the database, at `path`, `size_bytes` long.
    ///
    /// # Errors
    /// [`Error::Validation`] (field `file_path`) for an empty, blank, padded
    /// or over-long path or one with control or invisible characters; (field
    /// `file_size`) for a size of 0 (no PDF is empty: 0 means the size was
    /// not measured) or above `i64::MAX`.
    ///
    /// ```
    /// use mockinterview_db::resumes::PdfUpload;
    /// assert!(PdfUpload::path("s3://bucket/cv.pdf", 48_213).is_ok());
    /// assert!(PdfUpload::path("", 10).is_err());
    /// assert!(PdfUpload::path("s3://bucket/cv.pdf", 0).is_err());
    /// ```
    pub fn path(path: impl Into<String>, size_bytes: u64) -> Result<Self> {
        let path = path.into();
        FILE_PATH.check(&path)?;
        if size_bytes == 0 || i64::try_from(size_bytes).is_err() {
            return Err(invalid(
                "file_size",
                format!(
                    "{size_bytes} is not a PDF's size; give the file's length in bytes (1 to 2^63-1)"
                ),
            ));
        }
        Ok(Self(Pdf::Path { path, size_bytes }))
    }

    /// The PDF's size in bytes.
    pub fn size_bytes(&self) -> u64 {
        match &self.0 {
            Pdf::Inline(bytes) => bytes.len() as u64,
            Pdf::Path { size_bytes, .. } => *size_bytes,
        }
    }

    /// True when the bytes go into the database.
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Pdf::Inline(_))
    }

    /// The bytes, when stored inline.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.0 {
            Pdf::Inline(bytes) => Some(bytes),
            Pdf::Path { .. } => None,
        }
    }

    /// The path, when stored outside the database.
    pub fn file_path(&self) -> Option<&str> {
        match &self.0 {
            Pdf::Inline(_) => None,
            Pdf::Path { path, .. } => Some(path),
        }
    }

    /// `(file_path, file_data)` for the row.
    fn into_columns(self) -> (Option<String>, Option<Vec<u8>>) {
        match self.0 {
            Pdf::Inline(bytes) => (None, Some(bytes)),
            Pdf::Path { path, .. } => (Some(path), None),
        }
    }
}

/// Checks extracted resume text: at most [`MAX_CONTENT_BYTES`], no NUL
/// (line breaks, tabs and other control characters from PDF extraction are
/// kept; empty text is accepted).
fn check_content(content: &str) -> Result<()> {
    CONTENT.check(content)
}

/// What [`create_resume`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewResume {
    /// Owner (`user_profiles.id`).
    pub user_id: Uuid,
    /// Title shown to the user: 1 to [`MAX_TITLE_CHARS`] characters on one
    /// line (no control characters), not blank, no surrounding whitespace.
    pub title: String,
    /// Original file name: 1 to [`MAX_FILE_NAME_BYTES`] bytes on one line,
    /// not blank, no surrounding whitespace.
    pub file_name: String,
    /// The PDF, inline or as a path.
    pub pdf: PdfUpload,
    /// Extracted text, if already available (at most
    /// [`MAX_CONTENT_BYTES`], no NUL).
    pub content: Option<String>,
}

/// A resume without its PDF bytes and text: what lists show.
#[derive(Clone, Debug, PartialEq, Eq, FromQueryResult, Serialize, Deserialize)]
pub struct ResumeSummary {
    /// Resume id.
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Title.
    pub title: String,
    /// Original file name.
    pub file_name: String,
    /// Path of the PDF when stored outside the database.
    pub file_path: Option<String>,
    /// Size of the PDF in bytes.
    pub file_size: i64,
    /// True when the PDF bytes are in the database.
    pub stored_inline: bool,
    /// True once extracted text is recorded.
    pub has_content: bool,
    /// Creation time.
    pub created_at: chrono::DateTime<chrono::FixedOffset>,
    /// Last update time.
    pub updated_at: chrono::DateTime<chrono::FixedOffset>,
}

/// A resume with its extracted text (still without the PDF bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeDetail {
    /// Everything a list shows.
    #[serde(flatten)]
    pub summary: ResumeSummary,
    /// Extracted text.
    pub content: Option<String>,
}

/// Where a resume's PDF is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredPdf {
    /// The bytes, read from the database.
    Inline(Vec<u8>),
    /// A path in the application's file storage.
    Path(String),
    /// Neither was recorded.
    Missing,
}

/// Creates a resume. The PDF was validated when the [`PdfUpload`] was made.
///
/// # Errors
/// [`Error::Validation`] for a title, file name or content breaking the
/// rules of [`NewResume`] (nothing written), [`Error::NotFound`] when the
/// user does not exist.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid, bytes: Vec<u8>) -> mockinterview_db::Result<()> {
/// use mockinterview_db::resumes::{create_resume, NewResume, PdfUpload};
/// let resume = create_resume(db, NewResume {
///     user_id,
///     title: "Backend CV".into(),
///     file_name: "cv.pdf".into(),
///     pdf: PdfUpload::inline(bytes)?, // or PdfUpload::path("s3://...", size)?
///     content: None,
/// }).await?;
/// assert!(resume.stored_inline);
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db, new), fields(user_id = %new.user_id, title = %new.title))]
pub async fn create_resume<S: Store + ?Sized>(db: &S, new: NewResume) -> Result<ResumeSummary> {
    TITLE.check(&new.title)?;
    FILE_NAME.check(&new.file_name)?;
    if let Some(content) = &new.content {
        check_content(content)?;
    }
    // Checked by PdfUpload::path (inline sizes are far below).
    let size = i64::try_from(new.pdf.size_bytes()).unwrap_or(i64::MAX);
    let (file_path, file_data) = new.pdf.into_columns();
    let row = resumes::ActiveModel {
        user_id: Set(new.user_id),
        title: Set(new.title),
        file_name: Set(new.file_name),
        file_path: Set(file_path),
        file_size: Set(size),
        content: Set(new.content),
        file_data: Set(file_data),
        ..Default::default()
    };
    // One round trip: the INSERT returns the summary columns only (not the
    // PDF bytes it just stored).
    let user_id = new.user_id;
    let mut insert = Entity::insert(row).into_query();
    insert.returning(Query::returning().exprs(summary_columns()));
    let insert = StatementBuilder::build(&insert, &sea_orm::DbBackend::Postgres);
    db.route()
        .write(Op::Plain, |c| async move {
            ResumeSummary::find_by_statement(insert)
                .one(&c)
                .await
                .map_err(|e| {
                    if is_foreign_key_violation(&e) {
                        crate::profiles::not_found(user_id)
                    } else {
                        Error::from(e)
                    }
                })?
                .ok_or_else(|| Error::Config("INSERT ... RETURNING returned no row".into()))
        })
        .await
}

/// The columns of a [`ResumeSummary`], for `RETURNING`. `IS NOT NULL` reads
/// the null bitmap only, never the PDF or the text.
fn summary_columns() -> Vec<Expr> {
    [
        "id",
        "user_id",
        "title",
        "file_name",
        "file_path",
        "file_size",
        "created_at",
        "updated_at",
        "file_data IS NOT NULL AS stored_inline",
        "content IS NOT NULL AS has_content",
    ]
    .into_iter()
    .map(Expr::cust)
    .collect()
}

fn summary_query() -> sea_orm::Select<Entity> {
    Entity::find()
        .select_only()
        .columns([
            Column::Id,
            Column::UserId,
            Column::Title,
            Column::FileName,
            Column::FilePath,
            Column::FileSize,
            Column::CreatedAt,
            Column::UpdatedAt,
        ])
        // IS NOT NULL reads the null bitmap only, never the PDF or the text.
        .expr_as(Expr::col(Column::FileData).is_not_null(), "stored_inline")
        .expr_as(Expr::col(Column::Content).is_not_null(), "has_content")
}

/// The user's resumes, newest first, without PDF bytes or extracted text.
///
/// # Errors
/// Database failures only; an unknown user has no resumes.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// for r in mockinterview_db::resumes::list_resumes(db, user_id).await? {
///     println!("{} {} ({} bytes)", r.id, r.title, r.file_size);
/// }
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn list_resumes<S: Store + ?Sized>(db: &S, user_id: Uuid) -> Result<Vec<ResumeSummary>> {
    db.route()
        .read(Op::Plain, |c| async move {
            Ok(summary_query()
                .filter(Column::UserId.eq(user_id))
                .order_by_desc(Column::CreatedAt)
                .order_by_desc(Column::Id)
                .into_model::<ResumeSummary>()
                .all(&c)
                .await?)
        })
        .await
}

/// One of the user's resumes with its extracted text, without PDF bytes.
///
/// # Errors
/// [`Error::NotFound`] when the user has no resume with this id.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// let detail = mockinterview_db::resumes::resume(db, user_id, resume_id).await?;
/// println!("{:?}", detail.content);
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn resume<S: Store + ?Sized>(
    db: &S,
    user_id: Uuid,
    resume_id: Uuid,
) -> Result<ResumeDetail> {
    db.route()
        .read(Op::Plain, |c| async move {
            find_detail(&c, user_id, resume_id).await
        })
        .await
}

async fn find_detail<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    resume_id: Uuid,
) -> Result<ResumeDetail> {
    #[derive(FromQueryResult)]
    struct Row {
        #[sea_orm(nested)]
        summary: ResumeSummary,
        content: Option<String>,
    }
    let row = summary_query()
        .column(Column::Content)
        .filter(Column::UserId.eq(user_id))
        .filter(Column::Id.eq(resume_id))
        .into_model::<Row>()
        .one(db)
        .await?
        .ok_or_else(|| not_found(resume_id))?;
    Ok(ResumeDetail {
        summary: row.summary,
        content: row.content,
    })
}

/// The resume's PDF: its bytes when stored in the database, else its path.
///
/// # Errors
/// [`Error::NotFound`] when the user has no resume with this id.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// use mockinterview_db::resumes::{resume_pdf, StoredPdf};
/// match resume_pdf(db, user_id, resume_id).await? {
///     StoredPdf::Inline(bytes) => println!("{} bytes from the database", bytes.len()),
///     StoredPdf::Path(path) => println!("read it from {path}"),
///     StoredPdf::Missing => println!("no file recorded"),
/// }
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn resume_pdf<S: Store + ?Sized>(
    db: &S,
    user_id: Uuid,
    resume_id: Uuid,
) -> Result<StoredPdf> {
    let (path, data): (Option<String>, Option<Vec<u8>>) = db
        .route()
        .read(Op::Plain, |c| async move {
            Entity::find()
                .select_only()
                .columns([Column::FilePath, Column::FileData])
                .filter(Column::UserId.eq(user_id))
                .filter(Column::Id.eq(resume_id))
                .into_tuple()
                .one(&c)
                .await?
                .ok_or_else(|| not_found(resume_id))
        })
        .await?;
    Ok(match (data, path) {
        (Some(bytes), _) => StoredPdf::Inline(bytes),
        (None, Some(path)) => StoredPdf::Path(path),
        (None, None) => StoredPdf::Missing,
    })
}

/// Records the text extracted from the resume's PDF.
///
/// # Errors
/// [`Error::Validation`] (field `content`) for text over
/// [`MAX_CONTENT_BYTES`] or holding NUL (nothing written);
/// [`Error::NotFound`] when the user has no resume with this id.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// mockinterview_db::resumes::update_resume_content(db, user_id, resume_id, "extracted text").await?;
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db, content))]
pub async fn update_resume_content<S: Store + ?Sized>(
    db: &S,
    user_id: Uuid,
    resume_id: Uuid,
    content: &str,
) -> Result<()> {
    check_content(content)?;
    db.route()
        .write(Op::Plain, |c| async move {
            let res = Entity::update_many()
                .col_expr(Column::Content, Expr::value(content))
                .filter(Column::UserId.eq(user_id))
                .filter(Column::Id.eq(resume_id))
                .exec(&c)
                .await?;
            if res.rows_affected == 0 {
                return Err(not_found(resume_id));
            }
            Ok(())
        })
        .await
}

/// Deletes the resume and its chunks (migration 004's trigger deletes the
/// chunks in the same statement).
///
/// # Errors
/// [`Error::NotFound`] when the user has no resume with this id.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// mockinterview_db::resumes::delete_resume(db, user_id, resume_id).await?;
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn delete_resume<S: Store + ?Sized>(
    db: &S,
    user_id: Uuid,
    resume_id: Uuid,
) -> Result<()> {
    db.route()
        .write(Op::Plain, |c| async move {
            let res = Entity::delete_many()
                .filter(Column::UserId.eq(user_id))
                .filter(Column::Id.eq(resume_id))
                .exec(&c)
                .await?;
            if res.rows_affected == 0 {
                return Err(not_found(resume_id));
            }
            Ok(())
        })
        .await
}

pub(crate) fn not_found(resume_id: Uuid) -> Error {
    Error::NotFound {
        entity: "resume",
        key: resume_id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{DbBackend, QueryTrait};

    #[test]
    fn listing_reads_file_data_only_through_is_not_null() {
        let sql = super::summary_query()
            .build(DbBackend::Postgres)
            .to_string();
        assert_eq!(sql.matches("file_data").count(), 1, "{sql}");
        assert!(sql.contains(r#""file_data" IS NOT NULL"#), "{sql}");
        assert!(
            !sql.contains(r#""content","#) && sql.contains(r#""content" IS NOT NULL"#),
            "{sql}"
        );
    }
}
