//! The `migration` command (`src/main.rs` only runs [`cli::run`]) and what
//! it needs beyond the migrations themselves. Applications do not compile
//! this crate: they depend on `mockinterview-db` (the data layer) and, to
//! migrate at start-up, on `migration`.
//!
//! | module | what |
//! |---|---|
//! | [`cli`] | the command line: `up`/`down`/`status`/`fresh` with the guard rails, `verify`, `up --dry-run`, `roles`, `doctor`, `import` |
//! | [`verify`] | the live schema diffed against what the migrations produce |
//! | [`dry_run`] | the pending migrations applied in a rolled-back transaction, diffed |
//! | [`roles`] | the SQL of the owner / application role split |
//! | [`doctor`] | why a connection fails (TLS, `pg_hba.conf`, a standby, a pooler's mode), with what to do |
//! | [`import`] | copying a database of the TypeScript app into this schema, with the library's input rules |

pub mod cli;
pub mod doctor;
pub mod dry_run;
pub mod import;
pub mod reembed;
pub mod roles;
pub mod verify;
