//! `registrar settings`: the default registry and the whitelist.

use super::{connect, print_json};
use crate::cli::args::{ClientArgs, SettingsCommand};
use crate::cli::table::fields;
use crate::cli::{json, Error, Result};
use crate::pb;

/// Splits Rancher's comma-separated whitelist: entries trimmed, empty ones dropped.
fn split_whitelist(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) async fn settings(client: &ClientArgs, command: SettingsCommand) -> Result<()> {
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
            conn.answer(api.get_settings(pb::GetSettingsRequest { min_revision: 0 }))
                .await?
                .settings
        }
        Some(request) => conn.answer(api.update_settings(request)).await?.settings,
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
}
