//! The registrar binary: parse the command line, set up tracing, run.

use clap::Parser;
use registrar::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    registrar::telemetry::init();
    match cli.command {
        Command::Serve(config) => {
            let listener = tokio::net::TcpListener::bind(config.listen).await?;
            registrar::server::run(config, listener, registrar::server::shutdown_signal()).await?;
        }
    }
    Ok(())
}
