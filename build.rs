//! Compiles the API and event protos with protox, so no protoc is needed.

/// API messages with a secret field; their Debug is written by hand.
const SECRET_MESSAGES: &[&str] = &[
    "CreateRegistryRequest",
    "UpdateRegistryRequest",
    "EcrCredentials",
    "PullCredential",
    "DockerAuthConfig",
    "CattleAuth",
    "KubernetesAuth",
    "CreateTokenResponse",
    "GetPullSecretResponse",
    "HostFile",
    "GetHostConfigResponse",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let api = [
        "proto/registrar/v1/environment.proto",
        "proto/registrar/v1/registry.proto",
        "proto/registrar/v1/settings.proto",
        "proto/registrar/v1/token.proto",
        "proto/registrar/v1/pull.proto",
        "proto/registrar/v1/key.proto",
        "proto/registrar/v1/history.proto",
    ];
    let events = ["proto/registrar/event/v1/event.proto"];
    println!("cargo:rerun-if-changed=proto");

    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let api_fds = protox::compile(api, ["proto"])?;
    std::fs::write(
        out.join("registrar_descriptor.bin"),
        prost::Message::encode_to_vec(&api_fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Messages that carry secrets get a redacting Debug (src/api/redact.rs).
        .skip_debug(SECRET_MESSAGES.iter().map(|m| format!("registrar.v1.{m}")))
        .compile_fds(api_fds)?;

    // The PullService server once more, for Watch to send messages encoded
    // once for all its watchers (src/api/watch.rs): WatchResponse is those
    // bytes there, and every other type is one of the messages above.
    let mut pull_fds = protox::compile(["proto/registrar/v1/pull.proto"], ["proto"])?;
    pull_fds
        .file
        .retain(|f| f.name() == "registrar/v1/pull.proto");
    let shared = out.join("shared");
    std::fs::create_dir_all(&shared)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&shared)
        .extern_path(".registrar.v1", "crate::pb")
        .extern_path(".registrar.v1.WatchResponse", "crate::api::Encoded")
        .compile_fds(pull_fds)?;

    let event_fds = protox::compile(events, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_fds(event_fds)?;
    Ok(())
}
