//! The bootstrap admin token: written once for a new log, removed from disk
//! when revoked, never written again.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

use super::Error;
use crate::app::{App, IssuedToken};
use crate::domain::access::Principal;
use crate::domain::event::{Role, Stream};

/// Name of the bootstrap admin token file inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Writes and records the first admin token of a new log, once: only while
/// no token was ever recorded. The file is written before the token is
/// recorded, so a crash between the two leaves a file that the next start
/// records, never a lost admin. A revoked bootstrap token never returns;
/// `registrar admin-token` mints a new admin token offline.
pub(super) async fn bootstrap_admin(app: &App, dir: &Path) -> Result<(), Error> {
    let path = dir.join(ADMIN_TOKEN_FILE);
    let (tokens_ever, admin_live) = {
        let state = app.projection().read();
        (
            state.stream_version(&Stream::Tokens.name()) > 0,
            state.has_admin_token(),
        )
    };
    if tokens_ever {
        remove_revoked_admin_file(app, &path);
        if !admin_live {
            tracing::warn!(
                "no admin token is live; mint one with `registrar admin-token` while the server is stopped"
            );
        }
        return Ok(());
    }
    let existing = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| IssuedToken::parse(t.trim()));
    let token = match existing {
        Some(token) => token,
        None => {
            let token = IssuedToken::generate();
            write_private(&path, token.token.expose_secret().as_bytes()).map_err(|source| {
                Error::AdminToken {
                    path: path.clone(),
                    source,
                }
            })?;
            token
        }
    };
    app.issue_token(
        &Principal::system(),
        Some(Role::Admin),
        String::new(),
        "bootstrap admin".to_owned(),
        &token,
    )
    .await?;
    tracing::info!(path = %path.display(), "wrote the admin token");
    Ok(())
}

/// Removes the bootstrap admin token file once its token is revoked, so no
/// dead secret stays on disk.
fn remove_revoked_admin_file(app: &App, path: &Path) {
    let Some(token) = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| IssuedToken::parse(t.trim()))
    else {
        return;
    };
    if app.projection().read().token(&token.token_id).is_some() {
        return;
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed the revoked admin token's file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove the revoked admin token's file")
        }
    }
}

/// Follows the projection and removes the admin token file when its token
/// is revoked while the server runs; ends with the projection.
pub(super) async fn forget_revoked_admin_file(app: App, path: PathBuf) {
    let mut applied = app.projection().watch_applied();
    while applied.changed().await.is_ok() {
        if !path.exists() {
            return;
        }
        remove_revoked_admin_file(&app, &path);
    }
}

/// Writes a file readable by its owner only, atomically (temp + rename + fsync).
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}
