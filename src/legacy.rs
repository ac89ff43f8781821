//! Data brought over from the TypeScript app with `migration import`:
//! lookups by the app's integer ids, and each user's primary resume.
//!
//! The app addressed profiles and resumes by `serial` integers (URLs such
//! as `/api/user/resumes/12`, Redis keys `user:id:<int>`, `resume:<int>`).
//! The import gives every row a uuid and keeps the map in `legacy_ids`
//! (migration 005), so those old ids still resolve:
//! [`profile_by_legacy_id`], [`resume_by_legacy_id`], and the reverse,
//! [`legacy_id_of`]. A map row outlives its entity: the old id of a deleted
//! profile gives [`Error::NotFound`], never another row.
//!
//! The app also let users mark one resume as primary (`resumes.is_primary`,
//! migration 005, at most one per user): [`primary_resume`],
//! [`set_primary_resume`], [`clear_primary_resume`]. Databases that never
//! came from the app can use them too.

use entity::legacy_ids;
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::profiles::Profile;
use crate::resumes::{self, ResumeDetail};
use crate::settings::Op;
use crate::store::Store;

/// A table of the TypeScript app whose integer ids are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LegacyTable {
    /// `user_profiles`.
    Profiles,
    /// `user_preferences`.
    Preferences,
    /// `resumes`.
    Resumes,
}

impl LegacyTable {
    /// The table's name (the same in both databases), as stored in
    /// `legacy_ids.table_name`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Profiles => legacy_ids::USER_PROFILES,
            Self::Preferences => legacy_ids::USER_PREFERENCES,
            Self::Resumes => legacy_ids::RESUMES,
        }
    }
}

/// The uuid the import gave the row `legacy_id` of `table`.
async fn new_id<C: ConnectionTrait>(
    db: &C,
    table: LegacyTable,
    legacy_id: i64,
) -> Result<Option<Uuid>> {
    use sea_orm::{ColumnTrait, QuerySelect};
    Ok(legacy_ids::Entity::find()
        .select_only()
        .column(legacy_ids::Column::Id)
        .filter(legacy_ids::Column::TableName.eq(table.as_str()))
        .filter(legacy_ids::Column::LegacyId.eq(legacy_id))
        .into_tuple::<Uuid>()
        .one(db)
        .await?)
}

fn legacy_not_found(entity: &'static str, legacy_id: i64) -> Error {
    Error::NotFound {
        entity,
        key: format!("legacy id {legacy_id}"),
    }
}

/// The profile that had the integer id `legacy_id` in the TypeScript app.
///
/// # Errors
/// [`Error::NotFound`] when no imported profile had that id, or it has been
/// deleted since.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db) -> mockinterview_db::Result<()> {
/// // An old cache key `user:id:42`:
/// let profile = mockinterview_db::legacy::profile_by_legacy_id(db, 42).await?;
/// println!("{} is now {}", profile.firebase_uid, profile.id);
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn profile_by_legacy_id<S: Store + ?Sized>(db: &S, legacy_id: i64) -> Result<Profile> {
    db.route()
        .read(Op::Plain, |c| async move {
            let not_found = || legacy_not_found("profile", legacy_id);
            let id = new_id(&c, LegacyTable::Profiles, legacy_id)
                .await?
                .ok_or_else(not_found)?;
            crate::profiles::find_by_id(&c, id)
                .await
                .map_err(|e| match e {
                    Error::NotFound { .. } => not_found(),
                    other => other,
                })
        })
        .await
}

/// The resume of `user_id` that had the integer id `legacy_id` in the
/// TypeScript app (`/api/user/resumes/<id>`), with its text, without the
/// PDF bytes. Scoped like the rest of the resumes API: another user's
/// resume is not found.
///
/// # Errors
/// [`Error::NotFound`] when the user has no imported resume with that id.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// use mockinterview_db::{legacy, resumes};
/// let old = legacy::resume_by_legacy_id(db, user_id, 12).await?;
/// let pdf = resumes::resume_pdf(db, user_id, old.summary.id).await?;
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn resume_by_legacy_id<S: Store + ?Sized>(
    db: &S,
    user_id: Uuid,
    legacy_id: i64,
) -> Result<ResumeDetail> {
    let id = db
        .route()
        .read(Op::Plain, |c| async move {
            new_id(&c, LegacyTable::Resumes, legacy_id).await
        })
        .await?
        .ok_or_else(|| legacy_not_found("resume", legacy_id))?;
    resumes::resume(db, user_id, id).await.map_err(|e| match e {
        Error::NotFound { .. } => legacy_not_found("resume", legacy_id),
        other => other,
    })
}

/// The integer id a row of `table` had in the TypeScript app, if it was
/// imported (for keys the old app still uses, e.g. `resume:<int>`).
///
/// # Errors
/// Database failures only.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// use mockinterview_db::legacy::{legacy_id_of, LegacyTable};
/// if let Some(old) = legacy_id_of(db, LegacyTable::Resumes, resume_id).await? {
///     println!("evict resume:{old}");
/// }
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn legacy_id_of<S: Store + ?Sized>(
    db: &S,
    table: LegacyTable,
    id: Uuid,
) -> Result<Option<i64>> {
    use sea_orm::{ColumnTrait, QuerySelect};
    db.route()
        .read(Op::Plain, |c| async move {
            Ok(legacy_ids::Entity::find()
                .select_only()
                .column(legacy_ids::Column::LegacyId)
                .filter(legacy_ids::Column::TableName.eq(table.as_str()))
                .filter(legacy_ids::Column::Id.eq(id))
                .into_tuple::<i64>()
                .one(&c)
                .await?)
        })
        .await
}

/// The user's primary resume, if one is marked.
///
/// # Errors
/// Database failures only.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// match mockinterview_db::legacy::primary_resume(db, user_id).await? {
///     Some(id) => println!("primary: {id}"),
///     None => println!("no primary resume"),
/// }
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn primary_resume<S: Store + ?Sized>(db: &S, user_id: Uuid) -> Result<Option<Uuid>> {
    use entity::resumes::{Column, Entity};
    use sea_orm::{ColumnTrait, QuerySelect};
    db.route()
        .read(Op::Plain, |c| async move {
            Ok(Entity::find()
                .select_only()
                .column(Column::Id)
                .filter(Column::UserId.eq(user_id))
                .filter(Column::IsPrimary.eq(true))
                .into_tuple::<Uuid>()
                .one(&c)
                .await?)
        })
        .await
}

/// Makes `resume_id` the user's primary resume, unmarking the previous one,
/// in one statement (the constraint allowing one primary per user is
/// checked at its end).
///
/// # Errors
/// [`Error::NotFound`] when the user has no such resume (nothing changes);
/// [`Error::Conflict`] when a concurrent call marked another resume at the
/// same time (retry).
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// mockinterview_db::legacy::set_primary_resume(db, user_id, resume_id).await?;
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn set_primary_resume<S: Store + ?Sized>(
    db: &S,
    user_id: Uuid,
    resume_id: Uuid,
) -> Result<()> {
    db.route()
        .write(Op::Plain, |c| async move {
            let res = c
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "UPDATE resumes SET is_primary = (id = $2) \
                     WHERE user_id = $1 AND (is_primary OR id = $2) \
                       AND EXISTS (SELECT 1 FROM resumes WHERE id = $2 AND user_id = $1)",
                    [user_id.into(), resume_id.into()],
                ))
                .await
                .map_err(primary_conflict)?;
            if res.rows_affected() == 0 {
                return Err(Error::NotFound {
                    entity: "resume",
                    key: resume_id.to_string(),
                });
            }
            Ok(())
        })
        .await
}

/// Unmarks the user's primary resume, if any.
///
/// # Errors
/// Database failures only.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// mockinterview_db::legacy::clear_primary_resume(db, user_id).await?;
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn clear_primary_resume<S: Store + ?Sized>(db: &S, user_id: Uuid) -> Result<()> {
    db.route()
        .write(Op::Plain, |c| async move {
            c.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE resumes SET is_primary = false WHERE user_id = $1 AND is_primary",
                [user_id.into()],
            ))
            .await?;
            Ok(())
        })
        .await
}

/// `exclusion_violation` (23P01) of `resumes_one_primary_per_user` is a
/// concurrent change: a conflict, not a database failure.
fn primary_conflict(e: sea_orm::DbErr) -> Error {
    if pgconn::sqlstate(&e).as_deref() == Some("23P01") {
        Error::Conflict {
            message: "another request marked a different primary resume at the same time; \
                      read the current one and retry"
                .into(),
        }
    } else {
        Error::from(e)
    }
}
