//! `migration <command>`: the command line of [`migration_tool::cli`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    migration_tool::cli::run().await
}
