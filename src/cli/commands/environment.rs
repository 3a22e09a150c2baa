//! `registrar env`: create, list, show and delete environments.

use serde_json::Value;

use super::{connect, orchestration_name, print_json};
use crate::cli::args::{ClientArgs, EnvCommand, OrchestrationArg};
use crate::cli::table::{fields, when, Table};
use crate::cli::{json, Result};
use crate::pb;

pub(super) async fn env(client: &ClientArgs, command: EnvCommand) -> Result<()> {
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
            let e = conn
                .answer(api.create_environment(pb::CreateEnvironmentRequest {
                    name,
                    orchestration: orchestration as i32,
                    request_id: String::new(),
                }))
                .await?
                .environment
                .unwrap_or_default();
            print_environment(client.json, &e);
        }
        EnvCommand::List => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = conn
                    .answer(api.list_environments(pb::ListEnvironmentsRequest {
                        min_revision: 0,
                        page_size: 500,
                        page_token,
                    }))
                    .await?;
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
            let e = conn
                .answer(api.get_environment(pb::GetEnvironmentRequest {
                    id,
                    min_revision: 0,
                }))
                .await?
                .environment
                .unwrap_or_default();
            print_environment(client.json, &e);
        }
        EnvCommand::Rm { id } => {
            conn.answer(api.delete_environment(pb::DeleteEnvironmentRequest {
                id: id.clone(),
                request_id: String::new(),
            }))
            .await?;
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
