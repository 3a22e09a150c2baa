//! The people's commands: environments, registries, settings, tokens,
//! resolve, watch, host configuration and pull secrets. Tables by default,
//! `--json` for scripts.

use std::io::{IsTerminal, Read, Write};
use std::path::{Component, Path};

use serde_json::Value;

use super::connect::{Connection, Discovery};
use super::table::{fields, when, Table};
use super::{json, Error, Result};
use crate::config::{
    ClientArgs, Command, EnvCommand, HostFormatArg, OrchestrationArg, PasswordArgs,
    RegistryCommand, RegistryKindArg, RoleArg, SettingsCommand, TokenCommand,
};
use crate::pb;

/// Runs one of the people's commands.
pub(super) async fn run(command: Command) -> Result<()> {
    match command {
        Command::Env(a) => env(&a.client, a.command).await,
        Command::Registry(a) => registry(&a.client, a.command).await,
        Command::Settings(a) => settings(&a.client, a.command).await,
        Command::Token(a) => token(&a.client, a.command).await,
        Command::Resolve(a) => resolve(&a.client, &a.env, &a.image).await,
        Command::Watch(a) => watch(&a.client, &a.env, a.initial, &a.resume).await,
        Command::HostConfig(a) => {
            host_config(
                &a.client,
                &a.env,
                a.format,
                a.dir.as_deref(),
                a.include_auth,
            )
            .await
        }
        Command::PullSecret(a) => pull_secret(&a.client, &a.env, &a.name, &a.namespace).await,
        Command::Serve(_) | Command::KubeletCredentialProvider(_) => {
            Err(Error::Usage("not one of the people's commands".to_owned()))
        }
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

// ---- environments

async fn env(client: &ClientArgs, command: EnvCommand) -> Result<()> {
    let conn = connect(client).await?;
    let mut api = conn.environments();
    match command {
        EnvCommand::Create {
            name,
            orchestration,
        } => {
            let orchestration = match orchestration {
                OrchestrationArg::Cattle => pb::Orchestration::Cattle,
                OrchestrationArg::Kubernetes => pb::Orchestration::Kubernetes,
            };
            let e = api
                .create_environment(pb::CreateEnvironmentRequest {
                    name,
                    orchestration: orchestration as i32,
                    request_id: String::new(),
                })
                .await
                .map_err(|s| conn.status(s))?
                .into_inner()
                .environment
                .unwrap_or_default();
            print_environment(client.json, &e);
        }
        EnvCommand::List => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = api
                    .list_environments(pb::ListEnvironmentsRequest {
                        page_size: 500,
                        page_token,
                    })
                    .await
                    .map_err(|s| conn.status(s))?
                    .into_inner();
                all.extend(page.environments);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if client.json {
                print_json(&Value::Array(all.iter().map(json::environment).collect()));
            } else {
                let mut t = Table::new(&["ID", "NAME", "ORCHESTRATION", "CREATED"]);
                for e in &all {
                    t.row(vec![
                        e.id.clone(),
                        e.name.clone(),
                        orchestration_name(e.orchestration),
                        when(e.create_time.as_ref()),
                    ]);
                }
                print!("{}", t.render());
            }
        }
        EnvCommand::Show { id } => {
            let e = api
                .get_environment(pb::GetEnvironmentRequest { id })
                .await
                .map_err(|s| conn.status(s))?
                .into_inner()
                .environment
                .unwrap_or_default();
            print_environment(client.json, &e);
        }
        EnvCommand::Rm { id } => {
            api.delete_environment(pb::DeleteEnvironmentRequest {
                id: id.clone(),
                request_id: String::new(),
            })
            .await
            .map_err(|s| conn.status(s))?;
            if client.json {
                print_json(&serde_json::json!({}));
            } else {
                println!("deleted environment {id}");
            }
        }
    }
    Ok(())
}

fn print_environment(as_json: bool, e: &pb::Environment) {
    if as_json {
        print_json(&json::environment(e));
    } else {
        print!(
            "{}",
            fields(&[
                ("id", e.id.clone()),
                ("name", e.name.clone()),
                ("orchestration", orchestration_name(e.orchestration)),
                ("created", when(e.create_time.as_ref())),
            ])
        );
    }
}

// ---- registries

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

async fn registry(client: &ClientArgs, command: RegistryCommand) -> Result<()> {
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
            let secret = read_password(&password)?;
            // With an access key id the secret read is the ECR secret access key.
            let (password, ecr) = match access_key_id {
                Some(access_key_id) => (
                    String::new(),
                    Some(pb::EcrCredentials {
                        access_key_id,
                        secret_access_key: secret,
                    }),
                ),
                None => (secret, None),
            };
            let r = conn
                .registries()
                .create_registry(pb::CreateRegistryRequest {
                    environment_id: env,
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
                })
                .await
                .map_err(|s| conn.status(s))?
                .into_inner()
                .registry
                .unwrap_or_default();
            print_registry(client.json, &r);
        }
        RegistryCommand::List { env } => {
            conn = connect(client).await?;
            let all = list_registries(&conn, &env).await?;
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
                .registries()
                .get_registry(pb::GetRegistryRequest { id })
                .await
                .map_err(|s| conn.status(s))?
                .into_inner()
                .registry
                .unwrap_or_default();
            print_registry(client.json, &r);
        }
        RegistryCommand::Edit {
            id,
            email,
            username,
            password,
            insecure,
            ca_file,
            no_ca,
        } => {
            let ca_certificate_pem = match (ca_file, no_ca) {
                (Some(path), _) => Some(read_ca(&path)?),
                (None, true) => Some(String::new()),
                (None, false) => None,
            };
            conn = connect(client).await?;
            let password = read_password(&password)?;
            let r = conn
                .registries()
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
                    ecr: None,
                })
                .await
                .map_err(|s| conn.status(s))?
                .into_inner()
                .registry
                .unwrap_or_default();
            print_registry(client.json, &r);
        }
        RegistryCommand::Activate { id } => {
            conn = connect(client).await?;
            let r = conn
                .registries()
                .activate_registry(pb::ActivateRegistryRequest {
                    id,
                    request_id: String::new(),
                })
                .await
                .map_err(|s| conn.status(s))?
                .into_inner()
                .registry
                .unwrap_or_default();
            print_registry(client.json, &r);
        }
        RegistryCommand::Deactivate { id } => {
            conn = connect(client).await?;
            let r = conn
                .registries()
                .deactivate_registry(pb::DeactivateRegistryRequest {
                    id,
                    request_id: String::new(),
                })
                .await
                .map_err(|s| conn.status(s))?
                .into_inner()
                .registry
                .unwrap_or_default();
            print_registry(client.json, &r);
        }
        RegistryCommand::Rm { id } => {
            conn = connect(client).await?;
            conn.registries()
                .delete_registry(pb::DeleteRegistryRequest {
                    id: id.clone(),
                    request_id: String::new(),
                })
                .await
                .map_err(|s| conn.status(s))?;
            if client.json {
                print_json(&serde_json::json!({}));
            } else {
                println!("deleted registry {id}; its credentials are destroyed");
            }
        }
    }
    Ok(())
}

/// Lists every registry of an environment, following pages.
pub(super) async fn list_registries(conn: &Connection, env: &str) -> Result<Vec<pb::Registry>> {
    let mut api = conn.registries();
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = api
            .list_registries(pb::ListRegistriesRequest {
                environment_id: env.to_owned(),
                page_size: 500,
                page_token,
            })
            .await
            .map_err(|s| conn.status(s))?
            .into_inner();
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
        ])
    );
}

// ---- settings

/// Splits Rancher's comma-separated whitelist: entries trimmed, empty ones dropped.
fn split_whitelist(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn settings(client: &ClientArgs, command: SettingsCommand) -> Result<()> {
    let request = match command {
        SettingsCommand::Get => None,
        SettingsCommand::Set {
            default_registry,
            whitelist,
        } => {
            let mut paths = Vec::new();
            if default_registry.is_some() {
                paths.push("default_registry".to_owned());
            }
            if whitelist.is_some() {
                paths.push("whitelist".to_owned());
            }
            if paths.is_empty() {
                return Err(Error::Usage(
                    "nothing to set: give --default-registry and/or --whitelist".to_owned(),
                ));
            }
            Some(pb::UpdateSettingsRequest {
                settings: Some(pb::Settings {
                    default_registry: default_registry.unwrap_or_default().trim().to_owned(),
                    whitelist: whitelist
                        .as_deref()
                        .map(split_whitelist)
                        .unwrap_or_default(),
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
                request_id: String::new(),
            })
        }
    };
    let conn = connect(client).await?;
    let mut api = conn.settings();
    let s = match request {
        None => {
            api.get_settings(pb::GetSettingsRequest {})
                .await
                .map_err(|s| conn.status(s))?
                .into_inner()
                .settings
        }
        Some(request) => {
            api.update_settings(request)
                .await
                .map_err(|s| conn.status(s))?
                .into_inner()
                .settings
        }
    }
    .unwrap_or_default();
    if client.json {
        print_json(&json::settings(&s));
    } else {
        let default = if s.default_registry.is_empty() {
            "(Docker Hub)".to_owned()
        } else {
            s.default_registry.clone()
        };
        let whitelist = if s.whitelist.is_empty() {
            "(empty: every registry is allowed)".to_owned()
        } else {
            s.whitelist.join(",")
        };
        print!(
            "{}",
            fields(&[("default registry", default), ("whitelist", whitelist)])
        );
    }
    Ok(())
}

// ---- tokens

async fn token(client: &ClientArgs, command: TokenCommand) -> Result<()> {
    let conn = connect(client).await?;
    let mut api = conn.tokens();
    match command {
        TokenCommand::Create {
            role,
            env,
            description,
        } => {
            let role = match role {
                RoleArg::Admin => pb::Role::Admin,
                RoleArg::Member => pb::Role::Member,
                RoleArg::Agent => pb::Role::Agent,
            };
            let t = api
                .create_token(pb::CreateTokenRequest {
                    role: role as i32,
                    environment_id: env,
                    description,
                })
                .await
                .map_err(|s| conn.status(s))?
                .into_inner();
            if client.json {
                print_json(&json::created_token(&t));
            } else {
                // The secret alone on stdout, so `$(registrar token create ...)` works;
                // the id and the warning on stderr.
                eprintln!(
                    "token {} issued; it is shown once, keep it now:",
                    t.token_id
                );
                println!("{}", t.token);
            }
        }
        TokenCommand::List => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = api
                    .list_tokens(pb::ListTokensRequest {
                        page_size: 500,
                        page_token,
                    })
                    .await
                    .map_err(|s| conn.status(s))?
                    .into_inner();
                all.extend(page.tokens);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if client.json {
                print_json(&Value::Array(all.iter().map(json::token).collect()));
            } else {
                let mut t = Table::new(&["ID", "ROLE", "ENVIRONMENT", "CREATED", "DESCRIPTION"]);
                for k in &all {
                    t.row(vec![
                        k.token_id.clone(),
                        role_name(k.role),
                        or_dash(&k.environment_id),
                        when(k.create_time.as_ref()),
                        k.description.clone(),
                    ]);
                }
                print!("{}", t.render());
            }
        }
        TokenCommand::Revoke { token_id } => {
            api.revoke_token(pb::RevokeTokenRequest {
                token_id: token_id.clone(),
            })
            .await
            .map_err(|s| conn.status(s))?;
            if client.json {
                print_json(&serde_json::json!({}));
            } else {
                println!("revoked token {token_id}");
            }
        }
    }
    Ok(())
}

// ---- pulls

async fn resolve(client: &ClientArgs, env: &str, image: &str) -> Result<()> {
    let conn = connect(client).await?;
    let r = conn
        .pulls()
        .resolve_pull(pb::ResolvePullRequest {
            environment_id: env.to_owned(),
            target: Some(pb::resolve_pull_request::Target::Image(image.to_owned())),
        })
        .await
        .map_err(|s| conn.status(s))?
        .into_inner();
    if client.json {
        print_json(&json::resolve(&r));
    } else {
        let mut pairs = vec![
            ("image", r.resolved_image.clone()),
            ("registry", r.registry.clone()),
            ("revision", r.revision.to_string()),
        ];
        match &r.decision {
            Some(pb::resolve_pull_response::Decision::Allowed(a)) => {
                pairs.push(("decision", "allowed".to_owned()));
                pairs.push((
                    "credential",
                    match &a.credential {
                        Some(c) => format!("{} (password hidden; --json shows it)", c.username),
                        None => "none (anonymous pull)".to_owned(),
                    },
                ));
                pairs.push(("insecure", a.insecure.to_string()));
                if !a.ca_certificate_pem.is_empty() {
                    pairs.push(("ca", "yes".to_owned()));
                }
                if a.expire_time.is_some() {
                    pairs.push(("expires", when(a.expire_time.as_ref())));
                }
            }
            Some(pb::resolve_pull_response::Decision::Denied(d)) => {
                pairs.push(("decision", "denied".to_owned()));
                pairs.push((
                    "reason",
                    pb::DenyReason::try_from(d.reason)
                        .map(|r| r.as_str_name().to_owned())
                        .unwrap_or_else(|_| d.reason.to_string()),
                ));
                pairs.push(("message", d.message.clone()));
            }
            None => {}
        }
        print!("{}", fields(&pairs));
    }
    if let Some(pb::resolve_pull_response::Decision::Denied(d)) = &r.decision {
        return Err(Error::Denied(d.message.clone()));
    }
    Ok(())
}

async fn watch(client: &ClientArgs, env: &str, initial: bool, resume: &str) -> Result<()> {
    let conn = connect(client).await?;
    let mut stream = conn
        .pulls()
        .watch(pb::WatchRequest {
            environment_id: env.to_owned(),
            resume_token: resume.to_owned(),
            send_initial_state: initial,
        })
        .await
        .map_err(|s| conn.status(s))?
        .into_inner();
    let mut out = std::io::stdout().lock();
    loop {
        let message = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(status) => return Err(conn.status(status)),
        };
        let line = if client.json {
            json::watch(&message).to_string()
        } else {
            watch_line(&message)
        };
        // A closed stdout (`| head`) ends the watch quietly.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
    }
}

fn watch_line(m: &pb::WatchResponse) -> String {
    match &m.event {
        Some(pb::watch_response::Event::RegistryChanged(r)) => format!(
            "changed   {}  {}  {}  {}  {}",
            r.id,
            r.address,
            state_name(r.state),
            r.username,
            r.credential_id
        ),
        Some(pb::watch_response::Event::RegistryRemoved(r)) => {
            format!("removed   {}  {}", r.id, r.address)
        }
        Some(pb::watch_response::Event::SettingsChanged(s)) => format!(
            "settings  default={}  whitelist={}",
            or_dash(&s.default_registry),
            or_dash(&s.whitelist.join(","))
        ),
        Some(pb::watch_response::Event::Bookmark(b)) => {
            if b.initial_state_done {
                "bookmark  (initial state done)".to_owned()
            } else {
                "bookmark".to_owned()
            }
        }
        None => "(unknown event)".to_owned(),
    }
}

/// Checks that a path from the server stays under the target directory.
fn safe_relative(path: &str) -> Result<&Path> {
    let p = Path::new(path);
    let ok = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(p)
    } else {
        Err(Error::Usage(format!(
            "the server sent a file path that is not a plain relative path: {path:?}"
        )))
    }
}

/// Writes a file atomically with the given mode, creating its directories.
fn write_file(dir: &Path, relative: &Path, mode: u32, content: &str) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = dir.join(relative);
    let io = |context: String| move |source| Error::Io { context, source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    let tmp = path.with_extension("registrar-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(format!("writing {}", tmp.display())))?;
    f.write_all(content.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("setting the mode of {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(io(format!("writing {}", path.display())))?;
    Ok(())
}

async fn host_config(
    client: &ClientArgs,
    env: &str,
    format: HostFormatArg,
    dir: Option<&Path>,
    include_auth: bool,
) -> Result<()> {
    let format = match format {
        HostFormatArg::Docker => pb::HostConfigFormat::Docker,
        HostFormatArg::Containerd => pb::HostConfigFormat::Containerd,
        HostFormatArg::Containers => pb::HostConfigFormat::Containers,
        HostFormatArg::K3s => pb::HostConfigFormat::K3s,
    };
    let conn = connect(client).await?;
    let r = conn
        .pulls()
        .get_host_config(pb::GetHostConfigRequest {
            environment_id: env.to_owned(),
            format: format as i32,
            include_auth,
        })
        .await
        .map_err(|s| conn.status(s))?
        .into_inner();
    for f in &r.files {
        safe_relative(&f.path)?;
    }
    let Some(dir) = dir else {
        if client.json {
            print_json(&serde_json::json!({
                "files": r.files.iter().map(|f| json::host_file(f, true)).collect::<Vec<_>>(),
                "revision": r.revision.to_string(),
            }));
        } else {
            for f in &r.files {
                println!("== {} (mode {:o})", f.path, f.mode);
                print!("{}", f.content);
                if !f.content.ends_with('\n') {
                    println!();
                }
            }
        }
        return Ok(());
    };
    for f in &r.files {
        write_file(dir, safe_relative(&f.path)?, f.mode, &f.content)?;
    }
    if client.json {
        print_json(&serde_json::json!({
            "dir": dir.display().to_string(),
            "files": r.files.iter().map(|f| json::host_file(f, false)).collect::<Vec<_>>(),
            "revision": r.revision.to_string(),
        }));
    } else {
        let mut t = Table::new(&["MODE", "FILE"]);
        for f in &r.files {
            t.row(vec![
                format!("{:o}", f.mode),
                dir.join(&f.path).display().to_string(),
            ]);
        }
        print!("{}", t.render());
        if r.files.is_empty() {
            println!("(no files: the environment has no registry that needs trust settings)");
        }
    }
    Ok(())
}

async fn pull_secret(client: &ClientArgs, env: &str, name: &str, namespace: &str) -> Result<()> {
    let conn = connect(client).await?;
    let r = conn
        .pulls()
        .get_pull_secret(pb::GetPullSecretRequest {
            environment_id: env.to_owned(),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
        })
        .await
        .map_err(|s| conn.status(s))?
        .into_inner();
    if client.json {
        print_json(&serde_json::json!({
            "secretManifest": r.secret_manifest,
            "dockerConfigJson": r.docker_config_json,
            "revision": r.revision.to_string(),
        }));
    } else {
        // The manifest as is, ready for `kubectl apply -f -`.
        println!("{}", r.secret_manifest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rancher_whitelist_is_split_on_commas_and_trimmed() {
        assert_eq!(
            split_whitelist(" reg:5000, index.docker.io ,,quay.io/myorg/ "),
            vec!["reg:5000", "index.docker.io", "quay.io/myorg/"]
        );
        assert!(split_whitelist("").is_empty());
        assert!(split_whitelist(" , ").is_empty());
    }

    #[test]
    fn host_file_paths_must_stay_under_the_directory() {
        assert!(safe_relative("certs.d/reg:5000/ca.crt").is_ok());
        assert!(safe_relative("daemon.json").is_ok());
        for bad in ["", "/etc/passwd", "../x", "certs.d/../../x", "./x"] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn files_are_written_with_their_mode_and_directories() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), Path::new("a/b/c.toml"), 0o600, "x = 1\n").unwrap();
        let path = dir.path().join("a/b/c.toml");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x = 1\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
