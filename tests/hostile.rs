//! Hostile input: every RPC gets bad values, unknown enum values, wrong wire
//! types and oversized messages; each is refused with a clear code, and the
//! next call on the same connection succeeds. Watches per token are capped.

mod common;

use common::{custom, Clients, TestServer};
use registrar::pb;
use registrar::testing::raw::Call;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Every RPC's path.
const PATHS: &[&str] = &[
    "/registrar.v1.EnvironmentService/CreateEnvironment",
    "/registrar.v1.EnvironmentService/GetEnvironment",
    "/registrar.v1.EnvironmentService/ListEnvironments",
    "/registrar.v1.EnvironmentService/DeleteEnvironment",
    "/registrar.v1.RegistryService/CreateRegistry",
    "/registrar.v1.RegistryService/GetRegistry",
    "/registrar.v1.RegistryService/ListRegistries",
    "/registrar.v1.RegistryService/UpdateRegistry",
    "/registrar.v1.RegistryService/ActivateRegistry",
    "/registrar.v1.RegistryService/DeactivateRegistry",
    "/registrar.v1.RegistryService/DeleteRegistry",
    "/registrar.v1.SettingsService/GetSettings",
    "/registrar.v1.SettingsService/UpdateSettings",
    "/registrar.v1.TokenService/CreateToken",
    "/registrar.v1.TokenService/ListTokens",
    "/registrar.v1.TokenService/RevokeToken",
    "/registrar.v1.PullService/ResolvePull",
    "/registrar.v1.PullService/Watch",
    "/registrar.v1.PullService/GetHostConfig",
    "/registrar.v1.PullService/GetPullSecret",
    "/registrar.v1.KeyService/RewrapKeys",
    "/registrar.v1.KeyService/GetKeyStatus",
];

/// Calls `path` with raw request bytes and the admin token.
async fn raw_call(
    channel: &Channel,
    token: &str,
    path: &'static str,
    body: Vec<u8>,
) -> Result<bytes::Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone())
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    Call::raw(path, Some(token), body).send(&mut grpc).await
}

/// A call that must work after every refused one, on the same connection.
async fn still_serves(c: &mut Clients, after: &str) {
    c.settings
        .get_settings(pb::GetSettingsRequest { min_revision: 0 })
        .await
        .unwrap_or_else(|s| panic!("the connection broke after {after}: {s:?}"));
}

/// Protobuf bytes of field 1 as length-delimited, with `len` bytes.
fn big_field(len: usize) -> Vec<u8> {
    let mut out = vec![0x0A];
    let mut n = len;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.resize(out.len() + len, b'a');
    out
}

#[tokio::test]
async fn wrong_wire_types_and_garbage_are_refused_by_every_rpc_and_the_connection_survives() {
    let server = TestServer::start().await;
    let channel = server.channel().await;
    let mut c = Clients::over(channel.clone(), common::Bearer::new(Some(&server.admin)));
    let bodies: [(&str, Vec<u8>); 4] = [
        // Field 1 as fixed32 where every request has a string or an enum.
        ("field 1 as fixed32", vec![0x0D, 1, 2, 3, 4]),
        ("a truncated varint", vec![0x08, 0xFF]),
        ("a length past the end", vec![0x0A, 0x7F, b'x']),
        ("an invalid wire type", vec![0x0F, 0, 0]),
    ];
    for path in PATHS {
        for (what, body) in &bodies {
            let answer = raw_call(&channel, &server.admin, path, body.clone()).await;
            let no_fields = path.ends_with("/GetKeyStatus");
            if no_fields && what.starts_with("field 1") {
                // These requests have no field 1: an unknown field is
                // skipped, as protobuf requires.
                answer.expect("unknown fields are skipped");
                continue;
            }
            let err = answer.expect_err(&format!("{path} refuses {what}"));
            // gRPC maps a message that does not parse to INTERNAL.
            assert_eq!(err.code(), Code::Internal, "{path} with {what}: {err:?}");
            still_serves(&mut c, &format!("{path} with {what}")).await;
        }
    }
}

#[tokio::test]
async fn oversized_messages_are_refused_by_every_rpc_and_the_connection_survives() {
    let server = TestServer::start().await;
    let channel = server.channel().await;
    let mut c = Clients::over(channel.clone(), common::Bearer::new(Some(&server.admin)));
    for path in PATHS {
        let err = raw_call(&channel, &server.admin, path, big_field(300 * 1024))
            .await
            .expect_err("300 KiB are refused");
        assert_eq!(err.code(), Code::ResourceExhausted, "{path}: {err:?}");
        assert!(err.message().contains("too large"), "{path}: {err:?}");
        still_serves(&mut c, path).await;
    }
    // RegistryService takes CA bundles and keys: 100 KiB is within its limit
    // (and then refused by the rules), but not within the others'.
    let err = raw_call(
        &channel,
        &server.admin,
        "/registrar.v1.RegistryService/GetRegistry",
        big_field(100 * 1024),
    )
    .await
    .expect_err("no such registry");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = raw_call(
        &channel,
        &server.admin,
        "/registrar.v1.EnvironmentService/GetEnvironment",
        big_field(100 * 1024),
    )
    .await
    .expect_err("too large");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    still_serves(&mut c, "100 KiB").await;
}

/// Runs one refused call and checks its code and the connection after it.
macro_rules! refused {
    ($c:expr, $code:expr, $what:expr, $call:expr) => {{
        let r = $call.await;
        match r {
            ::std::result::Result::Ok(v) => panic!("{} was accepted: {:?}", $what, v),
            ::std::result::Result::Err(s) => assert_eq!(s.code(), $code, "{}: {:?}", $what, s),
        }
        still_serves(&mut $c, $what).await;
    }};
}

#[tokio::test]
async fn bad_values_and_unknown_enums_are_refused_by_every_rpc_and_the_connection_survives() {
    let server = TestServer::start().await;
    let channel = server.channel().await;
    let mut c = Clients::over(channel.clone(), common::Bearer::new(Some(&server.admin)));
    let env = c.create_env("prod", pb::Orchestration::Kubernetes).await;
    let reg = c
        .reg
        .create_registry(custom(&env, "r.example.com", "u", "pw"))
        .await
        .expect("create")
        .into_inner()
        .registry
        .expect("registry");
    let agent = c.token(pb::Role::Agent, &env).await;
    let mut a = Clients::over(channel.clone(), common::Bearer::new(Some(&agent)));
    use Code::*;

    // EnvironmentService.
    refused!(c, InvalidArgument, "unknown orchestration", {
        c.env.create_environment(pb::CreateEnvironmentRequest {
            name: "x".into(),
            orchestration: 42,
            request_id: String::new(),
        })
    });
    refused!(c, NotFound, "a control character id", {
        c.env.get_environment(pb::GetEnvironmentRequest {
            min_revision: 0,
            id: "\u{0}\u{7f}".into(),
        })
    });
    refused!(c, InvalidArgument, "a negative page size", {
        c.env.list_environments(pb::ListEnvironmentsRequest {
            min_revision: 0,
            page_size: -1,
            page_token: String::new(),
        })
    });
    refused!(c, InvalidArgument, "a forged page token", {
        c.env.list_environments(pb::ListEnvironmentsRequest {
            min_revision: 0,
            page_size: 0,
            page_token: "%%%".into(),
        })
    });
    refused!(c, NotFound, "deleting a missing environment", {
        c.env.delete_environment(pb::DeleteEnvironmentRequest {
            id: "missing".into(),
            request_id: String::new(),
        })
    });

    // RegistryService: the address faults of R3, unknown kinds, bad secrets.
    // A long address is quoted back only in part, or its echo would exceed
    // the header limit and cost the caller the connection.
    let long_address = format!("https://{}", "a".repeat(100 * 1024));
    for (what, address) in [
        ("a 100 KiB address with a scheme", long_address.as_str()),
        ("a scheme", "https://r.io"),
        ("a path", "r.io/team"),
        ("user info", "u:p@r.io"),
        ("whitespace", " r.io"),
        ("a wildcard", "*.r.io"),
        ("a bad port", "r.io:99999"),
        ("an unbracketed IPv6 address", "::1:5000"),
        ("an empty address", ""),
    ] {
        refused!(c, InvalidArgument, what, {
            c.reg.create_registry(custom(&env, address, "u", "pw"))
        });
    }
    refused!(c, InvalidArgument, "an unknown kind", {
        c.reg.create_registry(pb::CreateRegistryRequest {
            kind: 99,
            ..custom(&env, "k.io", "u", "pw")
        })
    });
    refused!(c, InvalidArgument, "no password", {
        c.reg.create_registry(custom(&env, "k.io", "u", ""))
    });
    refused!(c, InvalidArgument, "a GCR key that is not one", {
        c.reg.create_registry(pb::CreateRegistryRequest {
            kind: pb::RegistryKind::Gcr as i32,
            address: "gcr.io".into(),
            username: "_json_key".into(),
            ..custom(&env, "", "", "{\"type\":\"user\"}")
        })
    });
    refused!(c, InvalidArgument, "a CA bundle with a private key", {
        c.reg.create_registry(pb::CreateRegistryRequest {
            ca_certificate_pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
                .into(),
            ..custom(&env, "k.io", "u", "pw")
        })
    });
    refused!(c, NotFound, "another environment", {
        c.reg.create_registry(custom("missing", "k.io", "u", "pw"))
    });
    refused!(c, NotFound, "a missing registry", {
        c.reg.get_registry(pb::GetRegistryRequest {
            min_revision: 0,
            id: "missing".into(),
        })
    });
    refused!(c, InvalidArgument, "a negative page size", {
        c.reg.list_registries(pb::ListRegistriesRequest {
            min_revision: 0,
            environment_id: env.clone(),
            page_size: -7,
            page_token: String::new(),
        })
    });
    refused!(c, InvalidArgument, "an edit without the password", {
        c.reg.update_registry(pb::UpdateRegistryRequest {
            id: reg.id.clone(),
            username: "v".into(),
            ..Default::default()
        })
    });
    refused!(c, InvalidArgument, "an edit of the address", {
        c.reg.update_registry(pb::UpdateRegistryRequest {
            id: reg.id.clone(),
            address: "other.io".into(),
            password: "pw".into(),
            ..Default::default()
        })
    });
    refused!(c, FailedPrecondition, "activating an active registry", {
        c.reg.activate_registry(pb::ActivateRegistryRequest {
            id: reg.id.clone(),
            request_id: String::new(),
        })
    });
    refused!(c, NotFound, "deactivating a missing registry", {
        c.reg.deactivate_registry(pb::DeactivateRegistryRequest {
            id: "missing".into(),
            request_id: String::new(),
        })
    });
    refused!(c, NotFound, "deleting a missing registry", {
        c.reg.delete_registry(pb::DeleteRegistryRequest {
            id: "missing".into(),
            request_id: String::new(),
        })
    });

    // SettingsService.
    refused!(c, InvalidArgument, "a whitelist entry with a scheme", {
        c.settings.update_settings(pb::UpdateSettingsRequest {
            settings: Some(pb::Settings {
                default_registry: String::new(),
                whitelist: vec!["https://r.io".into()],
            }),
            update_mask: None,
            request_id: String::new(),
        })
    });
    refused!(c, InvalidArgument, "an unknown update_mask path", {
        c.settings.update_settings(pb::UpdateSettingsRequest {
            settings: None,
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["password".into()],
            }),
            request_id: String::new(),
        })
    });
    refused!(c, PermissionDenied, "an agent reading settings", {
        a.settings
            .get_settings(pb::GetSettingsRequest { min_revision: 0 })
    });

    // TokenService.
    refused!(c, InvalidArgument, "an unknown role", {
        c.tokens.create_token(pb::CreateTokenRequest {
            role: 9,
            environment_id: env.clone(),
            description: String::new(),
        })
    });
    refused!(c, InvalidArgument, "a negative page size", {
        c.tokens.list_tokens(pb::ListTokensRequest {
            min_revision: 0,
            page_size: -1,
            page_token: String::new(),
        })
    });
    refused!(c, NotFound, "revoking a missing token", {
        c.tokens.revoke_token(pb::RevokeTokenRequest {
            token_id: "missing".into(),
        })
    });

    // PullService: the image faults of R17.
    let long = format!("r.io/{}:1", "a".repeat(1100));
    for (what, image) in [
        ("an image over 1024 bytes", long.as_str()),
        ("an empty image", ""),
        ("a double colon", "r.io/app::1"),
        ("an upper-case path", "r.io/App:1"),
        ("a short digest", "r.io/app@sha256:abc"),
        (
            "a tag over 128 characters",
            &format!("app:{}", "t".repeat(129)),
        ),
    ] {
        refused!(c, InvalidArgument, what, c.resolve(&env, image));
    }
    refused!(c, InvalidArgument, "no image and no registry", {
        c.pull.resolve_pull(pb::ResolvePullRequest {
            min_revision: 0,
            environment_id: env.clone(),
            target: None,
        })
    });
    refused!(
        c,
        NotFound,
        "a missing environment",
        c.resolve("missing", "app:1")
    );
    refused!(c, FailedPrecondition, "a forged resume token", {
        c.pull.watch(pb::WatchRequest {
            min_revision: 0,
            environment_id: env.clone(),
            resume_token: "forged".into(),
            send_initial_state: false,
        })
    });
    refused!(c, InvalidArgument, "an unknown host format", {
        c.pull.get_host_config(pb::GetHostConfigRequest {
            min_revision: 0,
            environment_id: env.clone(),
            format: 77,
            include_auth: false,
        })
    });
    refused!(
        c,
        InvalidArgument,
        "a secret name that is not a Kubernetes name",
        {
            a.pull.get_pull_secret(pb::GetPullSecretRequest {
                min_revision: 0,
                environment_id: String::new(),
                name: "Bad_Name".into(),
                namespace: String::new(),
            })
        }
    );
    drop(a);
}

#[tokio::test]
async fn a_token_may_hold_only_so_many_watches() {
    let server = TestServer::start_with(|c| {
        c.max_watches_per_token = 2;
        c.watch_bookmark_ms = 100;
    })
    .await;
    let mut c = server.admin().await;
    let env = c.create_env("prod", pb::Orchestration::Cattle).await;
    let mut a = server.agent(&mut c, &env).await;
    let watch = || pb::WatchRequest {
        min_revision: 0,
        environment_id: String::new(),
        resume_token: String::new(),
        send_initial_state: false,
    };
    let first = a.pull.watch(watch()).await.expect("first watch");
    let _second = a.pull.watch(watch()).await.expect("second watch");
    let err = a.pull.watch(watch()).await.expect_err("third watch");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // Other tokens are not affected.
    c.pull
        .watch(pb::WatchRequest {
            min_revision: 0,
            environment_id: env.clone(),
            ..watch()
        })
        .await
        .expect("the admin's watch");
    // Closing one frees its slot.
    drop(first);
    let started = std::time::Instant::now();
    loop {
        match a.pull.watch(watch()).await {
            Ok(_) => break,
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(started.elapsed().as_secs() < 20, "the slot was not freed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(s) => panic!("{s:?}"),
        }
    }
}
