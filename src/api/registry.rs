//! RegistryService: no answer of it carries a password (R9).

use tonic::{Request, Response, Status};

use super::{convert, fingerprint, Api, Page};
use crate::app::{new_id, Executed, Trigger};
use crate::domain::command::Command;
use crate::pb;

fn registry_response(done: Executed, id: &str) -> Result<(Option<pb::Registry>, u64), Status> {
    let registry = convert::registry(&done.view.into_registry(id)?);
    Ok((Some(registry), done.revision))
}

#[tonic::async_trait]
impl pb::registry_service_server::RegistryService for Api {
    async fn create_registry(
        &self,
        request: Request<pb::CreateRegistryRequest>,
    ) -> Result<Response<pb::CreateRegistryResponse>, Status> {
        let who = self.principal(&request).await;
        let audit = self.audit_mutation(
            "registrar.v1.RegistryService/CreateRegistry",
            &request,
            who.as_ref().ok(),
        )?;
        let result: Result<Response<pb::CreateRegistryResponse>, Status> = async {
            let who = who?;
            let r = request.into_inner();
            let fp = fingerprint(&r);
            let registry_id = new_id();
            let command = convert::create_registry(&r, registry_id.clone(), new_id())?;
            let done = if r.verify {
                self.app
                    .execute_verified(&who, &r.request_id, &fp, command)
                    .await?
            } else {
                self.app
                    .execute(&who, &r.request_id, &fp, || command.clone())
                    .await?
            };
            let (registry, revision) = registry_response(done, &registry_id)?;
            Ok(Response::new(pb::CreateRegistryResponse {
                registry,
                revision,
            }))
        }
        .await;
        self.audit_outcome(audit, result)
    }

    async fn get_registry(
        &self,
        request: Request<pb::GetRegistryRequest>,
    ) -> Result<Response<pb::GetRegistryResponse>, Status> {
        let who = self.principal(&request).await?;
        let revision = self.reach(&request, request.get_ref().min_revision).await?;
        let reg = self.app.get_registry(&who, &request.get_ref().id)?;
        Ok(Response::new(pb::GetRegistryResponse {
            registry: Some(convert::registry(&reg)),
            revision,
        }))
    }

    async fn list_registries(
        &self,
        request: Request<pb::ListRegistriesRequest>,
    ) -> Result<Response<pb::ListRegistriesResponse>, Status> {
        let who = self.principal(&request).await?;
        let revision = self.reach(&request, request.get_ref().min_revision).await?;
        let r = request.get_ref();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let found = self
            .app
            .list_registries(&who, &r.environment_id, &page.after, page.fetch())?;
        let (registries, next_page_token) = page.take(
            found
                .iter()
                .map(|r| (r.address.as_str(), convert::registry(r))),
        );
        Ok(Response::new(pb::ListRegistriesResponse {
            registries,
            next_page_token,
            revision,
        }))
    }

    async fn update_registry(
        &self,
        request: Request<pb::UpdateRegistryRequest>,
    ) -> Result<Response<pb::UpdateRegistryResponse>, Status> {
        let who = self.principal(&request).await;
        let audit = self.audit_mutation(
            "registrar.v1.RegistryService/UpdateRegistry",
            &request,
            who.as_ref().ok(),
        )?;
        let result: Result<Response<pb::UpdateRegistryResponse>, Status> = async {
            let who = who?;
            let r = request.into_inner();
            let fp = fingerprint(&r);
            let command = convert::update_registry(&r, new_id());
            let done = if r.verify {
                self.app
                    .execute_verified(&who, &r.request_id, &fp, command)
                    .await?
            } else {
                self.app
                    .execute(&who, &r.request_id, &fp, || command.clone())
                    .await?
            };
            let (registry, revision) = registry_response(done, &r.id)?;
            Ok(Response::new(pb::UpdateRegistryResponse {
                registry,
                revision,
            }))
        }
        .await;
        self.audit_outcome(audit, result)
    }

    async fn activate_registry(
        &self,
        request: Request<pb::ActivateRegistryRequest>,
    ) -> Result<Response<pb::ActivateRegistryResponse>, Status> {
        let who = self.principal(&request).await;
        let audit = self.audit_mutation(
            "registrar.v1.RegistryService/ActivateRegistry",
            &request,
            who.as_ref().ok(),
        )?;
        let result: Result<Response<pb::ActivateRegistryResponse>, Status> = async {
            let who = who?;
            let r = request.into_inner();
            let fp = fingerprint(&r);
            let done = self
                .app
                .execute(&who, &r.request_id, &fp, || Command::ActivateRegistry {
                    registry_id: r.id.clone(),
                })
                .await?;
            let (registry, revision) = registry_response(done, &r.id)?;
            Ok(Response::new(pb::ActivateRegistryResponse {
                registry,
                revision,
            }))
        }
        .await;
        self.audit_outcome(audit, result)
    }

    async fn deactivate_registry(
        &self,
        request: Request<pb::DeactivateRegistryRequest>,
    ) -> Result<Response<pb::DeactivateRegistryResponse>, Status> {
        let who = self.principal(&request).await;
        let audit = self.audit_mutation(
            "registrar.v1.RegistryService/DeactivateRegistry",
            &request,
            who.as_ref().ok(),
        )?;
        let result: Result<Response<pb::DeactivateRegistryResponse>, Status> = async {
            let who = who?;
            let r = request.into_inner();
            let fp = fingerprint(&r);
            let done = self
                .app
                .execute(&who, &r.request_id, &fp, || Command::DeactivateRegistry {
                    registry_id: r.id.clone(),
                })
                .await?;
            let (registry, revision) = registry_response(done, &r.id)?;
            Ok(Response::new(pb::DeactivateRegistryResponse {
                registry,
                revision,
            }))
        }
        .await;
        self.audit_outcome(audit, result)
    }

    async fn delete_registry(
        &self,
        request: Request<pb::DeleteRegistryRequest>,
    ) -> Result<Response<pb::DeleteRegistryResponse>, Status> {
        let who = self.principal(&request).await;
        let audit = self.audit_mutation(
            "registrar.v1.RegistryService/DeleteRegistry",
            &request,
            who.as_ref().ok(),
        )?;
        let result: Result<Response<pb::DeleteRegistryResponse>, Status> = async {
            let who = who?;
            let r = request.into_inner();
            let fp = fingerprint(&r);
            let done = self
                .app
                .execute(&who, &r.request_id, &fp, || Command::DeleteRegistry {
                    registry_id: r.id.clone(),
                })
                .await?;
            Ok(Response::new(pb::DeleteRegistryResponse {
                revision: done.revision,
            }))
        }
        .await;
        self.audit_outcome(audit, result)
    }

    async fn verify_registry(
        &self,
        request: Request<pb::VerifyRegistryRequest>,
    ) -> Result<Response<pb::VerifyRegistryResponse>, Status> {
        let who = self.principal(&request).await;
        let audit = self.audit_mutation(
            "registrar.v1.RegistryService/VerifyRegistry",
            &request,
            who.as_ref().ok(),
        )?;
        let result: Result<Response<pb::VerifyRegistryResponse>, Status> = async {
            let who = who?;
            let r = request.into_inner();
            if r.id.is_empty() {
                return Err(super::error::invalid("id", "is required"));
            }
            let fp = fingerprint(&r);
            let done = self
                .app
                .verify_registry(&who, &r.request_id, &fp, &r.id, Trigger::OnDemand)
                .await?;
            let (registry, revision) = registry_response(done, &r.id)?;
            Ok(Response::new(pb::VerifyRegistryResponse {
                registry,
                revision,
            }))
        }
        .await;
        self.audit_outcome(audit, result)
    }
}
