//! EnvironmentService.

use tonic::{Request, Response, Status};

use super::{convert, fingerprint, Api, Page};
use crate::app::new_id;
use crate::domain::command::Command;
use crate::pb;

#[tonic::async_trait]
impl pb::environment_service_server::EnvironmentService for Api {
    async fn create_environment(
        &self,
        request: Request<pb::CreateEnvironmentRequest>,
    ) -> Result<Response<pb::CreateEnvironmentResponse>, Status> {
        let who = self.principal(&request).await;
        let audit = self.audit_mutation(
            "registrar.v1.EnvironmentService/CreateEnvironment",
            &request,
            who.as_ref().ok(),
        )?;
        let result: Result<Response<pb::CreateEnvironmentResponse>, Status> = async {
            let who = who?;
            let r = request.into_inner();
            let orchestration = convert::orchestration(r.orchestration)?;
            let fp = fingerprint(&r);
            let id = new_id();
            let done = self
                .app
                .execute(&who, &r.request_id, &fp, || Command::CreateEnvironment {
                    environment_id: id.clone(),
                    name: r.name.clone(),
                    orchestration,
                })
                .await?;
            let env = done.view.into_environment(&id)?;
            Ok(Response::new(pb::CreateEnvironmentResponse {
                environment: Some(convert::environment(&env)),
                revision: done.revision,
            }))
        }
        .await;
        self.audit_outcome(audit, result)
    }

    async fn get_environment(
        &self,
        request: Request<pb::GetEnvironmentRequest>,
    ) -> Result<Response<pb::GetEnvironmentResponse>, Status> {
        let who = self.principal(&request).await?;
        let revision = self.reach(&request, request.get_ref().min_revision).await?;
        let env = self.app.get_environment(&who, &request.get_ref().id)?;
        Ok(Response::new(pb::GetEnvironmentResponse {
            environment: Some(convert::environment(&env)),
            revision,
        }))
    }

    async fn list_environments(
        &self,
        request: Request<pb::ListEnvironmentsRequest>,
    ) -> Result<Response<pb::ListEnvironmentsResponse>, Status> {
        let who = self.principal(&request).await?;
        let revision = self.reach(&request, request.get_ref().min_revision).await?;
        let r = request.get_ref();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let found = self.app.list_environments(&who, &page.after, page.fetch());
        let (environments, next_page_token) = page.take(
            found
                .iter()
                .map(|e| (e.id.as_str(), convert::environment(e))),
        );
        Ok(Response::new(pb::ListEnvironmentsResponse {
            environments,
            next_page_token,
            revision,
        }))
    }

    async fn delete_environment(
        &self,
        request: Request<pb::DeleteEnvironmentRequest>,
    ) -> Result<Response<pb::DeleteEnvironmentResponse>, Status> {
        let who = self.principal(&request).await;
        let audit = self.audit_mutation(
            "registrar.v1.EnvironmentService/DeleteEnvironment",
            &request,
            who.as_ref().ok(),
        )?;
        let result: Result<Response<pb::DeleteEnvironmentResponse>, Status> = async {
            let who = who?;
            let r = request.into_inner();
            let fp = fingerprint(&r);
            let done = self
                .app
                .execute(&who, &r.request_id, &fp, || Command::DeleteEnvironment {
                    environment_id: r.id.clone(),
                })
                .await?;
            Ok(Response::new(pb::DeleteEnvironmentResponse {
                revision: done.revision,
            }))
        }
        .await;
        self.audit_outcome(audit, result)
    }
}
