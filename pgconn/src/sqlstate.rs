//! SQLSTATE codes of database errors.

use sea_orm::{DbErr, RuntimeErr};

/// The PostgreSQL SQLSTATE of a database error, if the server sent one.
///
/// Use SeaORM's `DbErr::sql_err()` for unique and foreign-key violations;
/// this is for the other conditions (lock timeouts, permissions, read-only
/// transactions, ...).
///
/// ```
/// assert_eq!(pgconn::sqlstate(&sea_orm::DbErr::Custom("x".into())), None);
/// ```
pub fn sqlstate(err: &DbErr) -> Option<String> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned()),
        _ => None,
    }
}
