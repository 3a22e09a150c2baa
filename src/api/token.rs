//! TokenService (admin only): secrets are shown once and stored as hashes.

use secrecy::ExposeSecret;
use tonic::{Request, Response, Status};

use super::{convert, Api, Page};
use crate::domain::command::Command;
use crate::pb;

#[tonic::async_trait]
impl pb::token_service_server::TokenService for Api {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let who = self.principal(&request).await;
        let audit = self.audit_mutation(
            "registrar.v1.TokenService/CreateToken",
            &request,
            who.as_ref().ok(),
        )?;
        let result: Result<Response<pb::CreateTokenResponse>, Status> = async {
            let who = who?;
            let r = request.into_inner();
            let role = convert::role(r.role)?;
            let (issued, revision) = self
                .app
                .create_token(&who, role, r.environment_id, r.description)
                .await?;
            Ok(Response::new(pb::CreateTokenResponse {
                token_id: issued.token_id,
                token: issued.token.expose_secret().to_owned(),
                revision,
            }))
        }
        .await;
        self.audit_outcome(audit, result)
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let who = self.principal(&request).await?;
        let revision = self.reach(&request, request.get_ref().min_revision).await?;
        let r = request.get_ref();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let found = self.app.list_tokens(&who, &page.after, page.fetch())?;
        let (tokens, next_page_token) =
            page.take(found.iter().map(|t| (t.id.as_str(), convert::token(t))));
        Ok(Response::new(pb::ListTokensResponse {
            tokens,
            next_page_token,
            revision,
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let who = self.principal(&request).await;
        let audit = self.audit_mutation(
            "registrar.v1.TokenService/RevokeToken",
            &request,
            who.as_ref().ok(),
        )?;
        let result: Result<Response<pb::RevokeTokenResponse>, Status> = async {
            let who = who?;
            let r = request.into_inner();
            let done = self
                .app
                .execute(&who, "", &[], || Command::RevokeToken {
                    token_id: r.token_id.clone(),
                })
                .await?;
            Ok(Response::new(pb::RevokeTokenResponse {
                revision: done.revision,
            }))
        }
        .await;
        self.audit_outcome(audit, result)
    }
}
