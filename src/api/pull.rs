//! PullService: ResolvePull shaped by the environment's orchestration (R2),
//! host trust files and Kubernetes pull secrets.

use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;
use tonic::{Request, Response, Status};

use super::error::invalid;
use super::Api;
use crate::adapters::host_config::{self, HostFormat};
use crate::adapters::kubernetes::CacheKey;
use crate::adapters::{cattle, kubernetes, PullAuth};
use crate::app::{OpenCredential, PullOutcome};
use crate::domain::event::Orchestration;
use crate::domain::resolve::{DenyReason, Target};
use crate::metrics::OrchestrationLabel;
use crate::pb;
use crate::timestamp::system_to_timestamp;

/// How long kubelets cache a credential that never expires. Short, so that a
/// deactivation reaches kubelets within a minute.
pub(crate) const KUBELET_DEFAULT_CACHE: Duration = Duration::from_secs(60);
/// Name of the pull secret when the caller gives none.
pub(crate) const DEFAULT_SECRET_NAME: &str = "registrar-pull-secret";

fn pull_auth<'a>(registry: &'a str, c: &'a OpenCredential) -> PullAuth<'a> {
    PullAuth {
        registry,
        username: &c.username,
        password: c.password.expose_secret(),
        email: &c.email,
    }
}

fn deny_reason(r: DenyReason) -> pb::DenyReason {
    match r {
        DenyReason::NotWhitelisted => pb::DenyReason::NotWhitelisted,
        DenyReason::DefaultNotWhitelisted => pb::DenyReason::DefaultNotWhitelisted,
        DenyReason::RegistryInactive => pb::DenyReason::RegistryInactive,
        DenyReason::CredentialExpired => pb::DenyReason::CredentialExpired,
    }
}

fn allowed(
    now: SystemTime,
    orchestration: Orchestration,
    registry: &str,
    repository_scope: Option<&str>,
    credential: Option<&OpenCredential>,
    insecure: bool,
    ca_certificate_pem: String,
) -> pb::PullAllowed {
    let auth = credential.map(|c| pull_auth(registry, c));
    let orchestrator = match orchestration {
        Orchestration::Cattle => pb::pull_allowed::Orchestrator::Cattle(match &auth {
            Some(auth) => {
                let config = cattle::auth_config(auth);
                pb::CattleAuth {
                    x_registry_auth: cattle::x_registry_auth(&config),
                    auth_config: Some(pb::DockerAuthConfig {
                        username: config.username,
                        password: config.password,
                        email: config.email,
                        server_address: config.server_address,
                    }),
                }
            }
            None => pb::CattleAuth::default(),
        }),
        Orchestration::Kubernetes => {
            let cache = kubernetes::cache_duration(
                now,
                credential.and_then(|c| c.expire_time),
                KUBELET_DEFAULT_CACHE,
            );
            pb::pull_allowed::Orchestrator::Kubernetes(match &auth {
                Some(auth) => pb::KubernetesAuth {
                    docker_config_json: kubernetes::docker_config_json(std::slice::from_ref(auth)),
                    credential_provider_response: kubernetes::credential_provider_response(
                        auth,
                        cache,
                        repository_scope.map_or(CacheKey::Registry, CacheKey::Image),
                    ),
                },
                None => pb::KubernetesAuth {
                    docker_config_json: kubernetes::docker_config_json(&[]),
                    credential_provider_response: kubernetes::anonymous_provider_response(cache),
                },
            })
        }
    };
    pb::PullAllowed {
        credential: credential.map(|c| pb::PullCredential {
            registry_id: c.registry_id.clone(),
            credential_id: c.credential_id.clone(),
            email: c.email.clone(),
            username: c.username.clone(),
            password: c.password.expose_secret().to_owned(),
        }),
        insecure,
        ca_certificate_pem,
        expire_time: credential
            .and_then(|c| c.expire_time)
            .map(system_to_timestamp),
        orchestrator: Some(orchestrator),
    }
}

#[tonic::async_trait]
impl crate::pb_served::pull_service_server::PullService for Api {
    async fn resolve_pull(
        &self,
        request: Request<pb::ResolvePullRequest>,
    ) -> Result<Response<pb::ResolvePullResponse>, Status> {
        let who = self.principal(&request).await?;
        self.reach(&request, request.get_ref().min_revision).await?;
        let r = request.get_ref();
        let target = match &r.target {
            Some(pb::resolve_pull_request::Target::Image(i)) => Target::Image(i),
            Some(pb::resolve_pull_request::Target::Registry(h)) => Target::Registry(h),
            None => return Err(invalid("image", "give an image or a registry")),
        };
        let answer = self
            .app
            .resolve_pull(&who, &r.environment_id, target)
            .await?;
        let label = answer.outcome.label();
        let credential = match &answer.outcome {
            PullOutcome::Allowed {
                credential: Some(c),
                ..
            } => Some(c),
            _ => None,
        };
        self.audit_handout(
            "registrar.v1.PullService/ResolvePull",
            &request,
            &who,
            credential.is_some(),
            |e| {
                e.resolved_registry.clone_from(&answer.registry);
                if let PullOutcome::Denied(_) = answer.outcome {
                    e.decision = "denied";
                    e.deny_reason = label;
                } else {
                    e.decision = label;
                }
                if let Some(c) = credential {
                    e.registry_id.clone_from(&c.registry_id);
                    e.credential_id.clone_from(&c.credential_id);
                    e.username_hmac = self.app.audit().username_hmac(&c.username);
                }
            },
        )?;
        let orchestration = match answer.orchestration {
            Orchestration::Cattle => OrchestrationLabel::cattle,
            Orchestration::Kubernetes => OrchestrationLabel::kubernetes,
        };
        self.app.metrics().resolve_pull(orchestration, label);
        let decision = match answer.outcome {
            PullOutcome::Denied(reason) => {
                pb::resolve_pull_response::Decision::Denied(pb::PullDenied {
                    reason: deny_reason(reason) as i32,
                    message: reason.message().to_owned(),
                })
            }
            PullOutcome::Allowed {
                credential,
                insecure,
                ca_certificate_pem,
            } => pb::resolve_pull_response::Decision::Allowed(allowed(
                self.app.now(),
                answer.orchestration,
                &answer.registry,
                answer.repository_scope.as_deref(),
                credential.as_ref(),
                insecure,
                ca_certificate_pem,
            )),
        };
        Ok(Response::new(pb::ResolvePullResponse {
            revision: answer.revision,
            resolved_image: answer.resolved_image,
            registry: answer.registry,
            decision: Some(decision),
            repository_scope: answer.repository_scope.unwrap_or_default(),
        }))
    }

    type WatchStream = super::watch::WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let who = self.principal(&request).await?;
        self.reach(&request, request.get_ref().min_revision).await?;
        self.app
            .reach_token(&request.get_ref().resume_token, super::deadline(&request))
            .await?;
        let r = request.get_ref();
        let start = self.app.watch(
            &who,
            &r.environment_id,
            &r.resume_token,
            r.send_initial_state,
        )?;
        if *self.closing.borrow() {
            return Err(Status::unavailable("the server is shutting down"));
        }
        let stream = self.watches.open(
            &self.app,
            who,
            start.cursor,
            start.initial,
            self.watch,
            self.closing.clone(),
        )?;
        Ok(Response::new(stream))
    }

    async fn get_host_config(
        &self,
        request: Request<pb::GetHostConfigRequest>,
    ) -> Result<Response<pb::GetHostConfigResponse>, Status> {
        let who = self.principal(&request).await?;
        self.reach(&request, request.get_ref().min_revision).await?;
        let r = request.get_ref();
        let format = match pb::HostConfigFormat::try_from(r.format) {
            Ok(pb::HostConfigFormat::Docker) => HostFormat::Docker,
            Ok(pb::HostConfigFormat::Containerd) => HostFormat::Containerd,
            Ok(pb::HostConfigFormat::Containers) => HostFormat::Containers,
            Ok(pb::HostConfigFormat::K3s) => HostFormat::K3s,
            _ => {
                return Err(invalid(
                    "format",
                    "must be HOST_CONFIG_FORMAT_DOCKER, _CONTAINERD, _CONTAINERS or _K3S",
                ))
            }
        };
        if r.include_auth && format != HostFormat::K3s {
            return Err(invalid(
                "include_auth",
                "only the K3S format carries credentials",
            ));
        }
        let (registries, revision) = self
            .app
            .host_registries(&who, &r.environment_id, r.include_auth)
            .await?;
        if r.include_auth {
            self.audit_handout(
                "registrar.v1.PullService/GetHostConfig",
                &request,
                &who,
                true,
                |e| {
                    e.credentials = registries
                        .iter()
                        .filter_map(|reg| {
                            reg.credential
                                .as_ref()
                                .map(|c| self.handed_out(&reg.address, c))
                        })
                        .collect();
                },
            )?;
        }
        let hosts: Vec<host_config::HostRegistry<'_>> = registries
            .iter()
            .map(|reg| host_config::HostRegistry {
                address: &reg.address,
                insecure: reg.insecure,
                ca_certificate_pem: &reg.ca_certificate_pem,
                auth: reg.credential.as_ref().map(|c| pull_auth(&reg.address, c)),
            })
            .collect();
        let files = host_config::render(format, &hosts)
            .into_iter()
            .map(|f| pb::HostFile {
                path: f.path,
                mode: f.mode,
                content: f.content,
            })
            .collect();
        let response = pb::GetHostConfigResponse { files, revision };
        check_response_size("the host configuration", &response)?;
        Ok(Response::new(response))
    }

    async fn get_pull_secret(
        &self,
        request: Request<pb::GetPullSecretRequest>,
    ) -> Result<Response<pb::GetPullSecretResponse>, Status> {
        let who = self.principal(&request).await?;
        self.reach(&request, request.get_ref().min_revision).await?;
        let r = request.get_ref();
        let (registries, revision) = self
            .app
            .pull_secret_registries(&who, &r.environment_id)
            .await?;
        self.audit_handout(
            "registrar.v1.PullService/GetPullSecret",
            &request,
            &who,
            true,
            |e| {
                e.credentials = registries
                    .iter()
                    .map(|reg| self.handed_out(&reg.address, &reg.credential))
                    .collect();
            },
        )?;
        let auths: Vec<PullAuth<'_>> = registries
            .iter()
            .map(|reg| pull_auth(&reg.address, &reg.credential))
            .collect();
        let docker_config_json = kubernetes::docker_config_json(&auths);
        let name = if r.name.is_empty() {
            DEFAULT_SECRET_NAME
        } else {
            &r.name
        };
        check_k8s_name("name", name)?;
        if !r.namespace.is_empty() {
            check_k8s_name("namespace", &r.namespace)?;
        }
        let response = pb::GetPullSecretResponse {
            secret_manifest: kubernetes::pull_secret_manifest(
                name,
                &r.namespace,
                &docker_config_json,
            ),
            docker_config_json,
            revision,
        };
        check_response_size("the pull secret", &response)?;
        Ok(Response::new(response))
    }
}

/// Most bytes one answer built from a whole environment may take: well
/// under the 4 MiB a gRPC client receives by default. The environment
/// quotas keep real answers far below it.
const MAX_RESPONSE_BYTES: usize = 3 * 1024 * 1024;

/// Refuses an answer that would not fit a client's receive limit.
fn check_response_size(what: &str, response: &impl prost::Message) -> Result<(), Status> {
    let len = response.encoded_len();
    if len > MAX_RESPONSE_BYTES {
        return Err(Status::resource_exhausted(format!(
            "{what} would take {len} bytes, more than the {MAX_RESPONSE_BYTES} one answer may carry; \
             spread the registries over more environments"
        )));
    }
    Ok(())
}

/// Checks a Kubernetes object name (RFC 1123 subdomain).
fn check_k8s_name(field: &str, name: &str) -> Result<(), Status> {
    let ok = name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(field, "must be a lower-case RFC 1123 name"))
    }
}
