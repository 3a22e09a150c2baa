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
    assert_eq!(
        c.verify_interval,
        Interval(std::time::Duration::from_secs(6 * 3600))
    );
    assert_eq!(c.verify_timeout_secs, 15);
    assert_eq!(c.sled_cache_mib, 64);
}

#[test]
fn the_sled_cache_takes_mebibytes_from_one_to_a_tebibyte() {
    let mib = |text: &str| parse(&[&format!("--sled-cache-mib={text}")]).map(|c| c.sled_cache_mib);
    assert_eq!(mib("16").unwrap(), 16);
    assert_eq!(mib("1048576").unwrap(), 1_048_576);
    for bad in ["0", "-1", "1048577", "64M", ""] {
        let e = mib(bad).unwrap_err().to_string();
        assert!(e.contains("--sled-cache-mib"), "{bad}: {e}");
    }
}

#[test]
fn verify_intervals_take_a_unit_and_zero_turns_the_check_off() {
    // `=`, so clap reads "-1h" as the value, not as a flag.
    let secs = |text: &str| {
        parse(&[&format!("--verify-interval={text}")]).map(|c| c.verify_interval.0.as_secs())
    };
    assert_eq!(secs("90s").unwrap(), 90);
    assert_eq!(secs("30m").unwrap(), 1800);
    assert_eq!(secs("6h").unwrap(), 21_600);
    assert_eq!(secs("1d").unwrap(), 86_400);
    assert_eq!(secs("0").unwrap(), 0);
    assert_eq!(secs("365d").unwrap(), 365 * 86_400);
    for bad in ["6", "h", "6x", "-1h", "366d", "99999999999999999999d"] {
        let e = secs(bad).unwrap_err().to_string();
        assert!(e.contains("--verify-interval"), "{bad}: {e}");
    }
    for bad in ["0", "301", "x"] {
        let e = parse(&["--verify-timeout-secs", bad])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--verify-timeout-secs"), "{bad}: {e}");
    }
    let c = parse(&["--verify-timeout-secs", "300"]).unwrap();
    assert_eq!(c.verify_timeout_secs, 300);
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
