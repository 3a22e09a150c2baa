//! `registrar registry`: add, edit, list, show, (de)activate and delete
//! registries; passwords from a prompt, stdin or a file, never argv.

use std::io::{IsTerminal, Read};
use std::path::Path;

use serde_json::Value;

use super::{connect, kind_name, or_dash, print_json, state_name};
use crate::cli::args::{ClientArgs, PasswordArgs, RegistryCommand, RegistryKindArg};
use crate::cli::connect::Connection;
use crate::cli::table::{fields, when, Table};
use crate::cli::{json, Error, Result};
use crate::pb;

/// Reads the password: from a file, from stdin, or from a no-echo prompt.
/// A trailing newline is dropped (one line from stdin; the whole input of
/// a file or pipe, for multi-line JSON keys).
fn read_password(args: &PasswordArgs) -> Result<String> {
    let raw = if let Some(path) = &args.password_file {
        std::fs::read_to_string(path).map_err(|source| Error::Io {
            context: format!("reading the password file {}", path.display()),
            source,
        })?
    } else if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .lock()
            .read_to_string(&mut text)
            .map_err(|source| Error::Io {
                context: "reading the password from standard input".to_owned(),
                source,
            })?;
        text
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ").map_err(|source| Error::Io {
            context: "reading the password from the terminal".to_owned(),
            source,
        })?
    } else {
        return Err(Error::Usage(
            "a password is required: type it at the prompt (on a terminal), or pass --password-stdin or --password-file".to_owned(),
        ));
    };
    let password = raw
        .strip_suffix("\r\n")
        .or_else(|| raw.strip_suffix('\n'))
        .unwrap_or(&raw)
        .to_owned();
    if password.is_empty() {
        return Err(Error::Usage("the password is empty".to_owned()));
    }
    Ok(password)
}

fn read_ca(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        context: format!("reading the CA file {}", path.display()),
        source,
    })
}

pub(super) async fn registry(client: &ClientArgs, command: RegistryCommand) -> Result<()> {
    // Local input first: a missing password file must not cost a round trip.
    let conn;
    match command {
        RegistryCommand::Add {
            env,
            kind,
            address,
            email,
            username,
            access_key_id,
            password,
            insecure,
            ca_file,
            verify,
            request_id,
        } => {
            let ca_certificate_pem = ca_file
                .as_deref()
                .map(read_ca)
                .transpose()?
                .unwrap_or_default();
            let kind = match kind {
                RegistryKindArg::DockerHub => pb::RegistryKind::DockerHub,
                RegistryKindArg::Quay => pb::RegistryKind::Quay,
                RegistryKindArg::Custom => pb::RegistryKind::Custom,
                RegistryKindArg::Ecr => pb::RegistryKind::Ecr,
                RegistryKindArg::Gcr => pb::RegistryKind::Gcr,
            };
            if kind == pb::RegistryKind::Custom && address.is_empty() {
                return Err(Error::Usage(
                    "--address is required for a custom registry (host with an optional port)"
                        .to_owned(),
                ));
            }
            conn = connect(client).await?;
            let (password, ecr) = secret_or_ecr_keys(read_password(&password)?, access_key_id);
            let r = conn
                .answer(
                    conn.registries()
                        .create_registry(pb::CreateRegistryRequest {
                            environment_id: env.id,
                            kind: kind as i32,
                            address,
                            email,
                            username,
                            password,
                            insecure,
                            ca_certificate_pem,
                            ecr,
                            request_id,
                            expire_time: None,
                            verify,
                        }),
                )
                .await?
                .registry
                .unwrap_or_default();
            print_registry(client.json, &r);
        }
        RegistryCommand::List { env } => {
            conn = connect(client).await?;
            let all = list_registries(&conn, &env.id).await?;
            if client.json {
                print_json(&Value::Array(all.iter().map(json::registry).collect()));
            } else {
                let mut t = Table::new(&[
                    "ID", "KIND", "ADDRESS", "STATE", "USERNAME", "EMAIL", "INSECURE", "CA",
                ]);
                for r in &all {
                    t.row(vec![
                        r.id.clone(),
                        kind_name(r.kind),
                        r.address.clone(),
                        state_name(r.state),
                        r.username.clone(),
                        or_dash(&r.email),
                        r.insecure.to_string(),
                        if r.ca_certificate_pem.is_empty() {
                            "-"
                        } else {
                            "yes"
                        }
                        .to_owned(),
                    ]);
                }
                print!("{}", t.render());
            }
        }
        RegistryCommand::Show { id } => {
            conn = connect(client).await?;
            let r = conn
                .answer(conn.registries().get_registry(pb::GetRegistryRequest {
                    id,
                    min_revision: 0,
                }))
                .await?;
            print_registry(client.json, &r.registry.unwrap_or_default());
        }
        RegistryCommand::Edit {
            id,
            email,
            username,
            access_key_id,
            password,
            insecure,
            ca_file,
            no_ca,
            verify,
        } => {
            let ca_certificate_pem = match (ca_file, no_ca) {
                (Some(path), _) => Some(read_ca(&path)?),
                (None, true) => Some(String::new()),
                (None, false) => None,
            };
            conn = connect(client).await?;
            let (password, ecr) = secret_or_ecr_keys(read_password(&password)?, access_key_id);
            let r = conn
                .answer(
                    conn.registries()
                        .update_registry(pb::UpdateRegistryRequest {
                            id,
                            address: String::new(),
                            email: email.unwrap_or_default(),
                            username: username.unwrap_or_default(),
                            password,
                            insecure,
                            ca_certificate_pem,
                            request_id: String::new(),
                            expire_time: None,
                            ecr,
                            verify,
                        }),
                )
                .await?
                .registry
                .unwrap_or_default();
            print_registry(client.json, &r);
        }
        RegistryCommand::Verify { id } => {
            conn = connect(client).await?;
            let request = pb::VerifyRegistryRequest {
                id,
                request_id: String::new(),
            };
            let r = conn
                .answer(conn.registries().verify_registry(request))
                .await?
                .registry
                .unwrap_or_default();
            print_registry(client.json, &r);
            let ok = r.last_verification.as_ref().is_some_and(|v| v.ok);
            if !ok {
                return Err(Error::Failed(format!(
                    "registry {} did not accept its credential",
                    r.address
                )));
            }
        }
        RegistryCommand::Activate { id } => {
            conn = connect(client).await?;
            let request = pb::ActivateRegistryRequest {
                id,
                request_id: String::new(),
            };
            let r = conn
                .answer(conn.registries().activate_registry(request))
                .await?;
            print_registry(client.json, &r.registry.unwrap_or_default());
        }
        RegistryCommand::Deactivate { id } => {
            conn = connect(client).await?;
            let request = pb::DeactivateRegistryRequest {
                id,
                request_id: String::new(),
            };
            let r = conn
                .answer(conn.registries().deactivate_registry(request))
                .await?;
            print_registry(client.json, &r.registry.unwrap_or_default());
        }
        RegistryCommand::Rm { id } => {
            conn = connect(client).await?;
            conn.answer(
                conn.registries()
                    .delete_registry(pb::DeleteRegistryRequest {
                        id: id.clone(),
                        request_id: String::new(),
                    }),
            )
            .await?;
            if client.json {
                print_json(&serde_json::json!({}));
            } else {
                println!("deleted registry {id}; its credentials are destroyed");
            }
        }
    }
    Ok(())
}

/// Returns the secret read as the password, or, with an access key id, as
/// the ECR secret access key beside it (and no password).
fn secret_or_ecr_keys(
    secret: String,
    access_key_id: Option<String>,
) -> (String, Option<pb::EcrCredentials>) {
    match access_key_id {
        Some(access_key_id) => (
            String::new(),
            Some(pb::EcrCredentials {
                access_key_id,
                secret_access_key: secret,
            }),
        ),
        None => (secret, None),
    }
}

/// Lists every registry of an environment, following pages.
pub(in crate::cli) async fn list_registries(
    conn: &Connection,
    env: &str,
) -> Result<Vec<pb::Registry>> {
    let mut api = conn.registries();
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = conn
            .answer(api.list_registries(pb::ListRegistriesRequest {
                min_revision: 0,
                environment_id: env.to_owned(),
                page_size: 500,
                page_token,
            }))
            .await?;
        all.extend(page.registries);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}

fn print_registry(as_json: bool, r: &pb::Registry) {
    if as_json {
        print_json(&json::registry(r));
        return;
    }
    let ca = if r.ca_certificate_pem.is_empty() {
        "-".to_owned()
    } else {
        format!(
            "{} certificate(s)",
            r.ca_certificate_pem.matches("BEGIN CERTIFICATE").count()
        )
    };
    print!(
        "{}",
        fields(&[
            ("id", r.id.clone()),
            ("environment", r.environment_id.clone()),
            ("kind", kind_name(r.kind)),
            ("address", r.address.clone()),
            ("state", state_name(r.state)),
            ("email", or_dash(&r.email)),
            ("username", r.username.clone()),
            ("insecure", r.insecure.to_string()),
            ("ca", ca),
            ("credential", r.credential_id.clone()),
            ("created", when(r.create_time.as_ref())),
            ("updated", when(r.update_time.as_ref())),
            ("expires", when(r.expire_time.as_ref())),
            ("ecr access key", or_dash(&r.ecr_access_key_id)),
            ("last refresh error", or_dash(&r.last_refresh_error)),
            ("last verified", verification(r.last_verification.as_ref())),
        ])
    );
}

/// `2026-12-02T06:00:00Z ok: the registry accepted ...`, or `-`.
fn verification(v: Option<&pb::Verification>) -> String {
    match v {
        None => "-".to_owned(),
        Some(v) => format!(
            "{} {}: {}",
            when(v.time.as_ref()),
            if v.ok { "ok" } else { "FAILED" },
            v.message
        ),
    }
}
