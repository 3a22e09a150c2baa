//! Tests of `config.rs`: the server's defaults as clap declares them.

use super::*;

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
    assert_eq!(c.metrics_listen, None);
    assert_eq!(c.log_format, LogFormat::Text);
}

fn parse(args: &[&str]) -> Result<ServeConfig, clap::Error> {
    use clap::{Args as _, FromArgMatches as _};
    let command =
        ServeConfig::augment_args(clap::Command::new("serve")).mut_args(|a| a.env(None::<&str>));
    let matches =
        command.try_get_matches_from(std::iter::once("serve").chain(args.iter().copied()))?;
    ServeConfig::from_arg_matches(&matches)
}

#[test]
fn log_format_and_metrics_listen_parse_and_bad_values_are_named() {
    let c = parse(&["--log-format", "json", "--metrics-listen", "127.0.0.1:9464"]).unwrap();
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    let e = parse(&["--log-format", "xml"]).unwrap_err().to_string();
    assert!(e.contains("--log-format") && e.contains("json"), "{e}");
    let e = parse(&["--metrics-listen", "9464"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--metrics-listen"), "{e}");
}

#[test]
fn a_printed_configuration_shows_no_secret() {
    let mut c = ServeConfig::for_dir("/srv/data".into());
    c.key_value = Some("KEYSECRET".into());
    c.admin_token = Some("rgr.a.TOKENSECRET".into());
    c.database_url = Some("postgres://app:DBSECRET@db:5432/registrar".into());
    let printed = format!("{c:?}");
    for secret in ["KEYSECRET", "TOKENSECRET", "DBSECRET"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    assert!(
        printed.contains("postgres://app:***@db:5432/registrar"),
        "{printed}"
    );
    let kv: crate::config::DatabaseUrl = "host=db user=app password=DBSECRET".into();
    assert!(!format!("{kv:?}").contains("DBSECRET"));
    let query: crate::config::DatabaseUrl = "postgres://db/r?user=app&password=DBSECRET".into();
    assert!(!format!("{query:?}").contains("DBSECRET"));
}
