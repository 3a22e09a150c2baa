//! The registrar binary: parse the command line, then serve (with tracing)
//! or run a client command.

use std::process::ExitCode;

use clap::Parser;
use registrar::cli::args::{Cli, Command};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(mut config) => {
            config.read_secrets_from_env();
            registrar::telemetry::init(config.log_format);
            let listener = tokio::net::TcpListener::bind(config.listen).await?;
            let shutdown = registrar::server::shutdown_signal();
            registrar::server::run(config, listener, shutdown, Default::default()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::AdminToken(args) => {
            use secrecy::ExposeSecret as _;
            let token = registrar::server::mint_admin_token(&args.serve_config()).await?;
            println!("{}", token.expose_secret());
            Ok(ExitCode::SUCCESS)
        }
        Command::Store(args) => {
            let registrar::cli::args::StoreCommand::Copy {
                from_data_dir,
                to_database_url,
                database_ca,
            } = args.command;
            let copied = registrar::store::copy::sled_to_postgres(
                &from_data_dir,
                &to_database_url,
                database_ca.as_deref(),
            )
            .await?;
            println!(
                "copied and verified {} records, {} request records and {} data keys",
                copied.records, copied.requests, copied.keys
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::AuditHmac(args) => {
            let mut config = registrar::config::ServeConfig::for_dir(args.data_dir);
            config.key_file = args.key_file;
            config.read_secrets_from_env();
            println!(
                "{}",
                registrar::server::audit_hmac(&config, &args.username)?
            );
            Ok(ExitCode::SUCCESS)
        }
        client => Ok(registrar::cli::main(client).await),
    }
}
