//! SettingsService (admin only).

use tonic::{Request, Response, Status};

use super::{convert, fingerprint, Api};
use crate::app::{Error, View};
use crate::domain::command::Command;

#[tonic::async_trait]
impl crate::pb::settings_service_server::SettingsService for Api {
    async fn get_settings(
        &self,
        request: Request<crate::pb::GetSettingsRequest>,
    ) -> Result<Response<crate::pb::GetSettingsResponse>, Status> {
        let who = self.principal(&request)?;
        who.check_admin("settings").map_err(Error::from)?;
        let state = self.app.projection().read();
        Ok(Response::new(crate::pb::GetSettingsResponse {
            settings: Some(convert::settings(state.settings())),
        }))
    }

    async fn update_settings(
        &self,
        request: Request<crate::pb::UpdateSettingsRequest>,
    ) -> Result<Response<crate::pb::UpdateSettingsResponse>, Status> {
        let who = self.principal(&request)?;
        let r = request.into_inner();
        let settings = r.settings.unwrap_or_default();
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let (mut default, mut whitelist) = (paths.is_empty(), paths.is_empty());
        for path in &paths {
            match path.as_str() {
                "default_registry" => default = true,
                "whitelist" => whitelist = true,
                other => {
                    return Err(super::error::invalid(
                        "update_mask",
                        &format!("unknown path {other:?}: use default_registry or whitelist"),
                    ))
                }
            }
        }
        let fp = fingerprint(
            &self.app,
            "UpdateSettings",
            &[
                settings.default_registry.as_bytes(),
                settings.whitelist.join("\n").as_bytes(),
                &[u8::from(default), u8::from(whitelist)],
            ],
        );
        let view = self
            .app
            .execute(&who, &r.request_id, &fp, || Command::UpdateSettings {
                default_registry: default.then(|| settings.default_registry.clone()),
                whitelist: whitelist.then(|| settings.whitelist.clone()),
            })
            .await?;
        let View::Settings(s) = view else {
            return Err(Status::internal("settings update produced no settings"));
        };
        Ok(Response::new(crate::pb::UpdateSettingsResponse {
            settings: Some(convert::settings(&s)),
        }))
    }
}
