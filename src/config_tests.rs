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
}
