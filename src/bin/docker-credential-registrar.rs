//! `docker-credential-registrar`: the docker credential helper protocol,
//! answered by registrar. The server and token come from `REGISTRAR_SERVER`,
//! `REGISTRAR_TOKEN` or `REGISTRAR_TOKEN_FILE`, never from argv.

use std::process::ExitCode;

use registrar::cli::credential_helper;
use registrar::cli::credential_helper::HelperConfig;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = HelperConfig::from_env();
    let outcome = credential_helper::run(&config, std::io::stdin().lock()).await;
    ExitCode::from(credential_helper::emit(&outcome))
}
