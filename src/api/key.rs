//! KeyService: rotation of the key-encryption key (admin only).

use tonic::{Request, Response, Status};

use super::Api;
use crate::app::KeyStatus;
use crate::pb;

fn usage(status: &KeyStatus) -> Vec<pb::KeyUsage> {
    status
        .usage
        .iter()
        .map(|(key_id, n)| pb::KeyUsage {
            key_id: key_id.clone(),
            data_keys: *n,
        })
        .collect()
}

#[tonic::async_trait]
impl pb::key_service_server::KeyService for Api {
    async fn rewrap_keys(
        &self,
        request: Request<pb::RewrapKeysRequest>,
    ) -> Result<Response<pb::RewrapKeysResponse>, Status> {
        let who = self.principal(&request).await;
        let audit = self.audit_mutation(
            "registrar.v1.KeyService/RewrapKeys",
            &request,
            who.as_ref().ok(),
        )?;
        let result: Result<Response<pb::RewrapKeysResponse>, Status> = async {
            let who = who?;
            let limit = usize::try_from(request.get_ref().limit).unwrap_or(usize::MAX);
            let status = self.app.rewrap_keys(&who, limit).await?;
            Ok(Response::new(pb::RewrapKeysResponse {
                rewrapped: status.rewrapped,
                remaining: status.remaining,
                current_key_id: status.current_key_id,
            }))
        }
        .await;
        self.audit_outcome(audit, result)
    }

    async fn get_key_status(
        &self,
        request: Request<pb::GetKeyStatusRequest>,
    ) -> Result<Response<pb::GetKeyStatusResponse>, Status> {
        let who = self.principal(&request).await?;
        let status = self.app.key_status(&who).await?;
        Ok(Response::new(pb::GetKeyStatusResponse {
            usage: usage(&status),
            current_key_id: status.current_key_id,
            loaded_key_ids: status.loaded_key_ids,
            remaining: status.remaining,
        }))
    }
}
