//! Tests of `client.rs`: where logins go, what answers are read, what
//! messages show.

use super::*;

#[test]
fn docker_hub_is_asked_at_its_api_host() {
    assert_eq!(api_host(&Address::docker_hub()), "registry-1.docker.io");
    let quay = Address::parse("quay.io").unwrap();
    assert_eq!(api_host(&quay), "quay.io");
    let custom = Address::parse("reg.example.com:5000").unwrap();
    assert_eq!(api_host(&custom), "reg.example.com:5000");
}

#[test]
fn tokens_are_read_from_either_field() {
    let t = token_of(br#"{"token":"abc","expires_in":300}"#).unwrap();
    assert_eq!(t.expose_secret(), "abc");
    let t = token_of(br#"{"access_token":"xyz"}"#).unwrap();
    assert_eq!(t.expose_secret(), "xyz");
    assert!(token_of(br#"{"token":""}"#).is_none());
    assert!(token_of(b"not json").is_none());
}

#[test]
fn messages_show_no_query() {
    let u: Uri = "https://auth.example.com:8443/token?account=alice&service=x"
        .parse()
        .unwrap();
    assert_eq!(shown(&u), "https://auth.example.com:8443/token");
}
