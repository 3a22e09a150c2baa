//! ECR's GetAuthorizationToken over HTTPS, signed with AWS Signature V4.
//! The endpoint is derived from the validated registry address, never taken
//! from user input as a URL; only tests may point it elsewhere.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use secrecy::{ExposeSecret, SecretString};

use crate::domain::address::Address;

/// Largest response body read from ECR.
const MAX_RESPONSE: usize = 64 * 1024;
/// How long one token request may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Where to ask for a registry's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The API's base URL, e.g. `https://api.ecr.us-west-2.amazonaws.com`.
    pub url: String,
    /// The signing region.
    pub region: String,
    /// The registry's AWS account id.
    pub account: String,
}

/// Derives the ECR API endpoint from an ECR registry address
/// (`<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`), or `None` for
/// any other address. `override_url` replaces the URL (tests only).
pub fn endpoint_for(address: &Address, override_url: Option<&str>) -> Option<Endpoint> {
    let region = address.ecr_region()?.to_owned();
    let host = address.host();
    let account = host.split('.').next()?.to_owned();
    let china = host.ends_with(".amazonaws.com.cn");
    let fips = host.contains(".dkr.ecr-fips.");
    let url = match override_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if fips => format!("https://ecr-fips.{region}.amazonaws.com"),
        None if china => format!("https://api.ecr.{region}.amazonaws.com.cn"),
        None => format!("https://api.ecr.{region}.amazonaws.com"),
    };
    Some(Endpoint {
        url,
        region,
        account,
    })
}

/// A token: the password of user `AWS`, and its expiry.
#[derive(Debug)]
pub struct EcrToken {
    /// The password part of `AWS:<password>`.
    pub password: SecretString,
    /// When ECR says it expires.
    pub expires_at: SystemTime,
}

/// One token request.
#[derive(Debug)]
pub struct FetchRequest<'a> {
    /// Where to ask.
    pub endpoint: &'a Endpoint,
    /// The IAM access key id.
    pub access_key_id: &'a str,
    /// The IAM secret access key.
    pub secret_access_key: &'a SecretString,
    /// The signing time.
    pub now: SystemTime,
}

/// Why a token could not be fetched; messages carry no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

/// Fetches ECR tokens.
#[async_trait::async_trait]
pub trait TokenSource: std::fmt::Debug + Send + Sync + 'static {
    /// Exchanges access keys for a token.
    async fn fetch(&self, request: &FetchRequest<'_>) -> Result<EcrToken, FetchError>;
}

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// The real ECR API over HTTPS (plain HTTP only for a test endpoint).
#[derive(Debug, Clone)]
pub struct HttpTokenSource {
    client: HttpsClient,
}

impl HttpTokenSource {
    /// Returns a client trusting the system's root certificates.
    pub fn new() -> Result<Self, FetchError> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| FetchError(format!("cannot load the system's root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Ok(Self { client })
    }
}

#[async_trait::async_trait]
impl TokenSource for HttpTokenSource {
    async fn fetch(&self, request: &FetchRequest<'_>) -> Result<EcrToken, FetchError> {
        let http_request = signed_request(request)?;
        let response = tokio::time::timeout(TIMEOUT, self.client.request(http_request))
            .await
            .map_err(|_| FetchError(format!("ECR did not answer within {}s", TIMEOUT.as_secs())))?
            .map_err(|e| FetchError(format!("cannot reach {}: {e}", request.endpoint.url)))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| FetchError(format!("reading ECR's answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(FetchError(error_message(status.as_u16(), &body)));
        }
        parse_token(&body)
    }
}

/// Builds the signed GetAuthorizationToken request.
pub(crate) fn signed_request(
    request: &FetchRequest<'_>,
) -> Result<http::Request<Full<Bytes>>, FetchError> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;

    let body = serde_json::json!({ "registryIds": [request.endpoint.account] }).to_string();
    let url = format!("{}/", request.endpoint.url);
    let mut http_request = http::Request::post(&url)
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        )
        .body(Full::new(Bytes::from(body.clone())))
        .map_err(|e| FetchError(format!("building the request: {e}")))?;
    let credentials = aws_credential_types::Credentials::new(
        request.access_key_id,
        request.secret_access_key.expose_secret(),
        None,
        None,
        "registrar",
    );
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&request.endpoint.region)
        .name("ecr")
        .time(request.now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| FetchError(format!("signing: {e}")))?
        .into();
    let headers: Vec<(String, String)> = http_request
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|e| FetchError(format!("signing: {e}")))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| FetchError(format!("signing: {e}")))?
        .into_parts();
    instructions.apply_to_request_http1x(&mut http_request);
    Ok(http_request)
}

/// Reads `{"authorizationData":[{"authorizationToken","expiresAt"}]}`.
pub(crate) fn parse_token(body: &[u8]) -> Result<EcrToken, FetchError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        authorization_data: Vec<Data>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Data {
        authorization_token: String,
        expires_at: f64,
    }
    // serde_json's errors quote no input for these shapes, but the body may
    // hold a token: the message names only what was wrong.
    let answer: Answer = serde_json::from_slice(body).map_err(|_| {
        FetchError("ECR's answer is not a GetAuthorizationToken response".to_owned())
    })?;
    let data = answer
        .authorization_data
        .into_iter()
        .next()
        .ok_or_else(|| FetchError("ECR's answer holds no authorization data".to_owned()))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data.authorization_token.as_bytes())
        .map_err(|_| FetchError("ECR's token is not base64".to_owned()))?;
    let decoded = zeroize::Zeroizing::new(decoded);
    let text = std::str::from_utf8(&decoded)
        .map_err(|_| FetchError("ECR's token is not text".to_owned()))?;
    let password = match text.split_once(':') {
        Some(("AWS", password)) if !password.is_empty() => password.to_owned(),
        _ => {
            return Err(FetchError(
                "ECR's token is not of the form AWS:<password>".to_owned(),
            ))
        }
    };
    if !data.expires_at.is_finite() || data.expires_at < 0.0 {
        return Err(FetchError("ECR's token has no valid expiry".to_owned()));
    }
    Ok(EcrToken {
        password: SecretString::from(password),
        expires_at: UNIX_EPOCH + Duration::from_secs_f64(data.expires_at),
    })
}

/// Describes an error answer by its status and AWS error type and message.
fn error_message(status: u16, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct AwsError {
        #[serde(rename = "__type")]
        kind: Option<String>,
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    let detail = serde_json::from_slice::<AwsError>(body)
        .ok()
        .map(|e| {
            let kind = e.kind.unwrap_or_default();
            let kind = kind.rsplit('#').next().unwrap_or_default().to_owned();
            let message: String = e.message.unwrap_or_default().chars().take(200).collect();
            format!("{kind}: {message}")
        })
        .unwrap_or_else(|| "no AWS error details".to_owned());
    format!("ECR answered {status}: {detail}")
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
