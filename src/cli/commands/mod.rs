//! The people's commands: environments, registries, settings, tokens,
//! resolve, watch, host configuration and pull secrets. Tables by default,
//! `--json` for scripts. One file per command family.

mod environment;
mod history;
mod host;
mod key;
mod pull;
mod registry;
mod settings;
mod token;

pub(super) use registry::list_registries;

use serde_json::Value;

use super::connect::{Connection, Discovery};
use super::{Error, Result};
use crate::cli::args::{ClientArgs, Command};
use crate::pb;

/// Runs one of the people's commands.
pub(super) async fn run(command: Command) -> Result<()> {
    match command {
        Command::Env(a) => environment::env(&a.client, a.command).await,
        Command::Registry(a) => registry::registry(&a.client, a.command).await,
        Command::Settings(a) => settings::settings(&a.client, a.command).await,
        Command::Token(a) => token::token(&a.client, a.command).await,
        Command::Resolve(a) => pull::resolve(&a.client, &a.env.id, &a.image).await,
        Command::Watch(a) => pull::watch(&a.client, &a.env.id, a.initial, &a.resume).await,
        Command::HostConfig(a) => {
            host::host_config(
                &a.client,
                &a.env.id,
                a.format,
                a.dir.as_deref(),
                a.include_auth,
            )
            .await
        }
        Command::PullSecret(a) => {
            host::pull_secret(&a.client, &a.env.id, &a.name, &a.namespace).await
        }
        Command::Key(a) => key::key(&a.client, a.command).await,
        Command::History(a) => history::history(&a).await,
        Command::Serve(_)
        | Command::KubeletCredentialProvider(_)
        | Command::AdminToken(_)
        | Command::Store(_)
        | Command::AuditHmac(_) => Err(Error::Usage("not one of the people's commands".to_owned())),
    }
}

async fn connect(client: &ClientArgs) -> Result<Connection> {
    Connection::open(&client.connection, Discovery::AdminTokenFile).await
}

/// Prints a JSON value, pretty, with a final newline.
fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

fn orchestration_name(value: i32) -> String {
    match pb::Orchestration::try_from(value) {
        Ok(pb::Orchestration::Cattle) => "cattle".to_owned(),
        Ok(pb::Orchestration::Kubernetes) => "kubernetes".to_owned(),
        _ => value.to_string(),
    }
}

fn kind_name(value: i32) -> String {
    match pb::RegistryKind::try_from(value) {
        Ok(pb::RegistryKind::DockerHub) => "docker-hub".to_owned(),
        Ok(pb::RegistryKind::Quay) => "quay".to_owned(),
        Ok(pb::RegistryKind::Custom) => "custom".to_owned(),
        Ok(pb::RegistryKind::Ecr) => "ecr".to_owned(),
        Ok(pb::RegistryKind::Gcr) => "gcr".to_owned(),
        _ => value.to_string(),
    }
}

fn state_name(value: i32) -> String {
    match pb::RegistryState::try_from(value) {
        Ok(pb::RegistryState::Active) => "active".to_owned(),
        Ok(pb::RegistryState::Inactive) => "inactive".to_owned(),
        _ => value.to_string(),
    }
}

fn role_name(value: i32) -> String {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Admin) => "admin".to_owned(),
        Ok(pb::Role::Member) => "member".to_owned(),
        Ok(pb::Role::Agent) => "agent".to_owned(),
        _ => value.to_string(),
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}
