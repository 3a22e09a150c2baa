//! SettingsService (admin only).

use tonic::{Request, Response, Status};

use super::{convert, fingerprint, Api};

#[tonic::async_trait]
impl crate::pb::settings_service_server::SettingsService for Api {
    async fn get_settings(
        &self,
        request: Request<crate::pb::GetSettingsRequest>,
    ) -> Result<Response<crate::pb::GetSettingsResponse>, Status> {
        let who = self.principal(&request).await?;
        let revision = self.reach(&request, request.get_ref().min_revision).await?;
        let settings = self.app.get_settings(&who)?;
        Ok(Response::new(crate::pb::GetSettingsResponse {
            settings: Some(convert::settings(&settings)),
            revision,
        }))
    }

    async fn update_settings(
        &self,
        request: Request<crate::pb::UpdateSettingsRequest>,
    ) -> Result<Response<crate::pb::UpdateSettingsResponse>, Status> {
        let who = self.principal(&request).await;
        let audit = self.audit_mutation(
            "registrar.v1.SettingsService/UpdateSettings",
            &request,
            who.as_ref().ok(),
        )?;
        let result: Result<Response<crate::pb::UpdateSettingsResponse>, Status> = async {
            let who = who?;
            let r = request.into_inner();
            let command = convert::update_settings(&r)?;
            let fp = fingerprint(&r);
            let done = self
                .app
                .execute(&who, &r.request_id, &fp, || command.clone())
                .await?;
            let s = done.view.into_settings()?;
            Ok(Response::new(crate::pb::UpdateSettingsResponse {
                settings: Some(convert::settings(&s)),
                revision: done.revision,
            }))
        }
        .await;
        self.audit_outcome(audit, result)
    }
}
