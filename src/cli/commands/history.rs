//! `registrar history`: an environment's changes, newest first.

use serde_json::Value;

use super::{connect, or_dash, print_json};
use crate::cli::args::HistoryArgs;
use crate::cli::table::{when, Table};
use crate::cli::{json, Result};
use crate::pb;

/// What an action is called in the table.
fn action_name(action: i32) -> String {
    pb::HistoryAction::try_from(action)
        .map(|a| {
            a.as_str_name()
                .trim_start_matches("HISTORY_ACTION_")
                .to_ascii_lowercase()
                .replace('_', " ")
        })
        .unwrap_or_else(|_| action.to_string())
}

pub(super) async fn history(args: &HistoryArgs) -> Result<()> {
    let conn = connect(&args.client).await?;
    let mut api = conn.history();
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let want = if args.limit == 0 {
            500
        } else {
            (args.limit - events.len()).min(500)
        };
        let page = conn
            .answer(api.list_events(pb::ListEventsRequest {
                environment_id: args.env.id.clone(),
                registry_id: args.registry.clone(),
                page_size: i32::try_from(want).unwrap_or(500),
                page_token,
                min_revision: 0,
            }))
            .await?;
        events.extend(page.events);
        if page.next_page_token.is_empty() || (args.limit > 0 && events.len() >= args.limit) {
            break;
        }
        page_token = page.next_page_token;
    }
    if args.client.json {
        print_json(&Value::Array(
            events.iter().map(json::history_event).collect(),
        ));
        return Ok(());
    }
    let mut t = Table::new(&[
        "POSITION", "TIME", "ACTOR", "ACTION", "REGISTRY", "ADDRESS", "CHANGED",
    ]);
    for e in &events {
        let mut changed = e.changed_fields.join(",");
        if !e.message.is_empty() {
            changed = format!("{} ({})", or_dash(&changed), e.message);
        }
        t.row(vec![
            e.position.to_string(),
            when(e.time.as_ref()),
            e.actor.clone(),
            action_name(e.action),
            or_dash(&e.registry_id),
            or_dash(&e.address),
            or_dash(&changed),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}
