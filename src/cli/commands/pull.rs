//! `registrar resolve` and `registrar watch`.

use std::io::Write;

use super::{connect, or_dash, print_json, state_name};
use crate::cli::args::ClientArgs;
use crate::cli::table::{fields, when};
use crate::cli::{json, Error, Result};
use crate::pb;

pub(super) async fn resolve(client: &ClientArgs, env: &str, image: &str) -> Result<()> {
    let conn = connect(client).await?;
    let request = pb::ResolvePullRequest {
        min_revision: 0,
        environment_id: env.to_owned(),
        target: Some(pb::resolve_pull_request::Target::Image(image.to_owned())),
    };
    let r = conn.answer(conn.pulls().resolve_pull(request)).await?;
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

pub(super) async fn watch(
    client: &ClientArgs,
    env: &str,
    initial: bool,
    resume: &str,
) -> Result<()> {
    let conn = connect(client).await?;
    let mut stream = conn
        .answer(conn.pulls().watch(pb::WatchRequest {
            min_revision: 0,
            environment_id: env.to_owned(),
            resume_token: resume.to_owned(),
            send_initial_state: initial,
        }))
        .await?;
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
