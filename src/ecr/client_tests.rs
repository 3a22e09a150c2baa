//! Tests of the ECR client: endpoints, signing and answers.

use super::*;

fn address(s: &str) -> Address {
    Address::for_kind(crate::domain::address::RegistryKind::Ecr, s).unwrap()
}

#[test]
fn endpoints_come_from_the_validated_address() {
    let e = endpoint_for(
        &address("123456789012.dkr.ecr.us-west-2.amazonaws.com"),
        None,
    )
    .unwrap();
    assert_eq!(e.url, "https://api.ecr.us-west-2.amazonaws.com");
    assert_eq!(
        (e.region.as_str(), e.account.as_str()),
        ("us-west-2", "123456789012")
    );
    let fips = endpoint_for(
        &address("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com"),
        None,
    )
    .unwrap();
    assert_eq!(fips.url, "https://ecr-fips.us-east-1.amazonaws.com");
    let cn = endpoint_for(
        &address("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
        None,
    )
    .unwrap();
    assert_eq!(cn.url, "https://api.ecr.cn-north-1.amazonaws.com.cn");
    assert!(endpoint_for(&Address::parse("reg.example.com").unwrap(), None).is_none());
}

#[test]
fn requests_are_signed_with_sigv4_for_ecr_in_the_region() {
    let endpoint = endpoint_for(
        &address("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
        None,
    )
    .unwrap();
    let secret = SecretString::from("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned());
    let r = signed_request(&FetchRequest {
        endpoint: &endpoint,
        access_key_id: "AKIAIOSFODNN7EXAMPLE",
        secret_access_key: &secret,
        now: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    })
    .unwrap();
    let auth = r.headers()["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20231114/eu-west-1/ecr/aws4_request"
        ),
        "{auth}"
    );
    assert!(auth.contains("x-amz-target"), "{auth}");
    assert!(!auth.contains("wJalr"), "the secret key is never sent");
    assert_eq!(r.headers()["x-amz-date"], "20231114T221320Z");
    assert_eq!(r.uri(), "https://api.ecr.eu-west-1.amazonaws.com/");
}

#[test]
fn a_token_answer_yields_the_aws_password_and_expiry() {
    let token = base64::engine::general_purpose::STANDARD.encode("AWS:secret-token");
    let body = format!(
        r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":1700043200.5,"proxyEndpoint":"https://x"}}]}}"#
    );
    let t = parse_token(body.as_bytes()).unwrap();
    assert_eq!(t.password.expose_secret(), "secret-token");
    assert_eq!(
        t.expires_at,
        UNIX_EPOCH + Duration::from_secs_f64(1_700_043_200.5)
    );
}

#[test]
fn bad_answers_are_errors_that_echo_nothing() {
    let not_aws = base64::engine::general_purpose::STANDARD.encode("root:SECRETMARK");
    for body in [
        "not json SECRETMARK".to_owned(),
        r#"{"authorizationData":[]}"#.to_owned(),
        format!(r#"{{"authorizationData":[{{"authorizationToken":"{not_aws}","expiresAt":1}}]}}"#),
    ] {
        let e = parse_token(body.as_bytes()).unwrap_err();
        assert!(!e.0.contains("SECRETMARK"), "{e}");
    }
    let m = error_message(
        400,
        br#"{"__type":"com.amazon#UnrecognizedClientException","message":"The security token included in the request is invalid."}"#,
    );
    assert_eq!(m, "ECR answered 400: UnrecognizedClientException: The security token included in the request is invalid.");
}
