//! `registrar key`: rotation of the key-encryption key. `add` and `retire`
//! edit the key file; `rewrap` and `status` ask the running server, and
//! `retire` asks it first whether any data key still needs an old key.

use serde_json::json;

use super::{connect, print_json};
use crate::cli::args::{ClientArgs, KeyCommand};
use crate::cli::table::Table;
use crate::cli::{Error, Result};
use crate::crypto;
use crate::pb;

pub(super) async fn key(client: &ClientArgs, command: KeyCommand) -> Result<()> {
    match command {
        KeyCommand::Add { key_file } => {
            let id = crypto::add_key_to_file(&key_file).map_err(key_file_error)?;
            if client.json {
                print_json(&json!({ "currentKeyId": id }));
            } else {
                println!("{id}");
                eprintln!(
                    "key {id} is now first in {}; restart the server, then run `registrar key rewrap`",
                    key_file.display()
                );
            }
        }
        KeyCommand::Rewrap { limit } => {
            let conn = connect(client).await?;
            let r = conn
                .answer(conn.keys().rewrap_keys(pb::RewrapKeysRequest { limit }))
                .await?;
            if client.json {
                print_json(&json!({
                    "rewrapped": r.rewrapped.to_string(),
                    "remaining": r.remaining.to_string(),
                    "currentKeyId": r.current_key_id,
                }));
            } else {
                println!(
                    "re-wrapped {} data keys under key {}; {} left under older keys",
                    r.rewrapped, r.current_key_id, r.remaining
                );
            }
        }
        KeyCommand::Status => {
            let conn = connect(client).await?;
            let s = status(&conn).await?;
            if client.json {
                print_json(&json!({
                    "currentKeyId": s.current_key_id,
                    "loadedKeyIds": s.loaded_key_ids,
                    "usage": s.usage.iter().map(|u| json!({
                        "keyId": u.key_id,
                        "dataKeys": u.data_keys.to_string(),
                    })).collect::<Vec<_>>(),
                    "remaining": s.remaining.to_string(),
                }));
            } else {
                let mut t = Table::new(&["KEY", "ROLE", "DATA KEYS"]);
                for (i, id) in s.loaded_key_ids.iter().enumerate() {
                    let n = s
                        .usage
                        .iter()
                        .find(|u| u.key_id == *id)
                        .map_or(0, |u| u.data_keys);
                    let role = if i == 0 { "current" } else { "old" };
                    t.row(vec![id.clone(), role.to_owned(), n.to_string()]);
                }
                for u in s
                    .usage
                    .iter()
                    .filter(|u| !s.loaded_key_ids.contains(&u.key_id))
                {
                    t.row(vec![
                        u.key_id.clone(),
                        "missing".to_owned(),
                        u.data_keys.to_string(),
                    ]);
                }
                print!("{}", t.render());
            }
        }
        KeyCommand::Retire { key_file } => {
            let conn = connect(client).await?;
            let s = status(&conn).await?;
            let file_current = crypto::Kek::load(&crypto::KeySource::File(key_file.clone()), false)
                .map_err(key_file_error)?
                .key_id();
            if file_current != s.current_key_id {
                return Err(Error::Usage(format!(
                    "the server's current key is {}, but {} starts with {file_current}: restart the server with this key file first",
                    s.current_key_id,
                    key_file.display()
                )));
            }
            if s.remaining > 0 {
                return Err(Error::Usage(format!(
                    "{} data keys are still wrapped by older keys: run `registrar key rewrap` first; nothing was removed",
                    s.remaining
                )));
            }
            let retired = crypto::retire_old_keys_in_file(&key_file).map_err(key_file_error)?;
            if client.json {
                print_json(&json!({ "retiredKeyIds": retired }));
            } else if retired.is_empty() {
                println!("{} holds only the current key", key_file.display());
            } else {
                println!(
                    "removed {} from {}; destroy every other copy of them to finish crypto-shredding",
                    retired.join(", "),
                    key_file.display()
                );
            }
        }
    }
    Ok(())
}

async fn status(conn: &crate::cli::connect::Connection) -> Result<pb::GetKeyStatusResponse> {
    conn.answer(conn.keys().get_key_status(pb::GetKeyStatusRequest {}))
        .await
}

fn key_file_error(e: crypto::Error) -> Error {
    Error::Usage(e.to_string())
}
