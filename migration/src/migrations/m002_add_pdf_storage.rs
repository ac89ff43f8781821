//! 002: optional PDF bytes stored in the database.
//!
//! Port of `002_add_pdf_storage.sql`: `resumes.file_data BYTEA`, for small
//! PDFs kept in PostgreSQL for transactional consistency; larger ones keep
//! using `file_path`. The CHECK keeps `file_size` honest for inline PDFs.

use sea_orm_migration::prelude::*;


#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Resumes::Table)
                    .add_column_if_not_exists(
                        ColumnDef::new(Resumes::FileData)
                            .blob()
                            .null()
                            .check(Expr::cust(
                                "file_data IS NULL OR octet_length(file_data) = file_size",
                            )),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Dropping the column drops the CHECK that references it.
        manager
            .alter_table(
                Table::alter()
                    .table(Resumes::Table)
                    .drop_column(Resumes::FileData)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Resumes {
    Table,
    FileData,
}
