//! `registrar token`: issue, list and revoke tokens.

use serde_json::Value;

use super::{connect, or_dash, print_json, role_name};
use crate::cli::args::{ClientArgs, RoleArg, TokenCommand};
use crate::cli::table::{when, Table};
use crate::cli::{json, Result};
use crate::pb;

pub(super) async fn token(client: &ClientArgs, command: TokenCommand) -> Result<()> {
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
            let t = conn
                .answer(api.create_token(pb::CreateTokenRequest {
                    role: role as i32,
                    environment_id: env.id,
                    description,
                }))
                .await?;
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
                let page = conn
                    .answer(api.list_tokens(pb::ListTokensRequest {
                        min_revision: 0,
                        page_size: 500,
                        page_token,
                    }))
                    .await?;
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
            conn.answer(api.revoke_token(pb::RevokeTokenRequest {
                token_id: token_id.clone(),
            }))
            .await?;
            if client.json {
                print_json(&serde_json::json!({}));
            } else {
                println!("revoked token {token_id}");
            }
        }
    }
    Ok(())
}
