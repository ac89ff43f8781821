//! Command-line entry point: `cargo run -p migration -- <up|down|status|fresh|refresh|reset>`.
//!
//! `sea-orm-cli migrate <command>` runs this same binary.

use sea_orm_migration::prelude::*;

#[tokio::main]
async fn main() {
    cli::run_cli(migration::Migrator).await;
}
