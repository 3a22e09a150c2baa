//! Tests of `config.rs`: the command line as clap reads it.

use clap::CommandFactory as _;

use super::*;

#[test]
fn the_command_line_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn the_server_s_ca_and_a_registry_s_ca_are_separate_flags() {
    let cli = Cli::try_parse_from([
        "registrar",
        "registry",
        "add",
        "--address",
        "reg.example.com:5000",
        "--ca-file",
        "registry-ca.crt",
        "--server-ca",
        "server-ca.crt",
    ])
    .unwrap();
    let Command::Registry(args) = cli.command else {
        panic!("a registry command")
    };
    let RegistryCommand::Add { ca_file, .. } = args.command else {
        panic!("registry add")
    };
    assert_eq!(ca_file, Some(PathBuf::from("registry-ca.crt")));
    assert_eq!(
        args.client.connection.server_ca,
        Some(PathBuf::from("server-ca.crt"))
    );
}

#[test]
fn for_dir_takes_the_defaults_the_flags_declare() {
    let c = ServeConfig::for_dir("/srv/data".into());
    assert_eq!(c.data_dir, std::path::PathBuf::from("/srv/data"));
    assert_eq!(c.listen.to_string(), "127.0.0.1:50051");
    assert_eq!(c.max_watches_per_token, 16);
    assert_eq!(c.max_registries_per_environment, 1_000);
    assert_eq!(c.max_request_bytes, 256 * 1024);
    assert_eq!(c.key_value, None);
    assert_eq!(c.admin_token, None);
    assert!(c.tls_cert.is_none() && !c.allow_plaintext);
}
