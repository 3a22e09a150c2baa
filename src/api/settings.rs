//! SettingsService (admin only).

use tonic::{Request, Response, Status};

use super::{convert, fingerprint, Api};
use crate::app::{Error, View};

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
        let command = convert::update_settings(&r)?;
        let fp = fingerprint(&r);
        let view = self
            .app
            .execute(&who, &r.request_id, &fp, || command.clone())
            .await?;
        let View::Settings(s) = view else {
            return Err(Status::internal("settings update produced no settings"));
        };
        Ok(Response::new(crate::pb::UpdateSettingsResponse {
            settings: Some(convert::settings(&s)),
        }))
    }
}
