//! Tests of `args.rs`: the command line as clap reads it.

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
