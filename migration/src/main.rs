//! `cargo run -p migration -- <command>` (and `sea-orm-cli migrate
//! <command>`): the command line of [`migration::cli`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    migration::cli::run().await
}
