//! Tests of `address.rs`: the reference cases restated as a table; long
//! because the table is.

use super::*;
use proptest::prelude::*;

fn err(input: &str) -> AddressError {
    match Address::parse(input) {
        Ok(address) => panic!("{input:?} parsed as {address}, expected an error"),
        Err(e) => e,
    }
}

fn canonical(input: &str) -> String {
    match Address::parse(input) {
        Ok(address) => address.as_str().to_string(),
        Err(e) => panic!("{input:?} was rejected: {e}"),
    }
}

fn kind_err(kind: RegistryKind, input: &str) -> String {
    match Address::for_kind(kind, input) {
        Ok(address) => panic!("{kind} accepted {input:?} as {address}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_input_is_required() {
    // Given nothing, when parsed, then the message asks for an address.
    assert_eq!(err(""), AddressError::Required);
    assert_eq!(err("").to_string(), "address is required");
}

#[test]
fn scheme_is_rejected_with_what_to_remove() {
    assert_eq!(
        err("https://reg.io").to_string(),
        "address must not include a scheme: remove \"https://\""
    );
    assert!(err("http://reg.io:5000/v2/")
        .to_string()
        .contains("remove \"http://\""));
    assert!(err("docker://reg.io")
        .to_string()
        .contains("remove \"docker://\""));
    assert!(err("HTTPS://reg.io")
        .to_string()
        .contains("remove \"HTTPS://\""));
    assert!(err("//reg.io").to_string().contains("remove \"//\""));
}

#[test]
fn path_is_rejected_with_what_to_remove() {
    assert_eq!(
        err("reg.io/v2/").to_string(),
        "address must not include a path: remove \"/v2/\""
    );
    assert!(err("reg.io:5000/myorg/app")
        .to_string()
        .contains("remove \"/myorg/app\""));
    assert!(err("reg.io/").to_string().contains("remove \"/\""));
    // Given a `://` inside a path, then it is the path that is reported, not a scheme.
    assert!(matches!(err("reg.io/x://y"), AddressError::Path { .. }));
}

#[test]
fn user_info_is_rejected_with_what_to_remove() {
    assert_eq!(
        err("user@reg.io"),
        AddressError::UserInfo {
            user_info: "user@".to_string()
        }
    );
    assert!(err("user@reg.io")
        .to_string()
        .starts_with("address must not include user info: remove \"user@\""));
}

#[test]
fn user_info_password_is_never_echoed() {
    // Given a password in the address, when rejected, then the message names the part to
    // remove with the password masked.
    let message = err("admin:s3cret@reg.io").to_string();
    assert!(message.contains("remove \"admin:***@\""), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
    let message = err("admin:p@ss@reg.io/v2").to_string();
    assert!(!message.contains("p@ss"), "{message}");
    assert_eq!(
        redact_user_info("https://u:pw@reg.io/x"),
        "https://u:***@reg.io/x"
    );
    assert_eq!(redact_user_info("reg.io/a:b@c"), "reg.io/a:b@c");
}

#[test]
fn whitespace_anywhere_is_rejected() {
    for input in [
        " reg.io",
        "reg.io ",
        "reg .io",
        "reg.io\n",
        "\treg.io",
        "reg.io\u{a0}",
        "reg\u{3000}.io",
        " ",
    ] {
        assert_eq!(err(input), AddressError::Whitespace, "{input:?}");
    }
    assert!(err(" reg.io")
        .to_string()
        .starts_with("address must not contain whitespace"));
}

#[test]
fn control_characters_are_rejected_naming_the_code_point() {
    let e = err("reg\u{7}.io");
    assert_eq!(e, AddressError::ControlCharacter { ch: '\u{7}' });
    assert!(e.to_string().contains("U+0007"), "{e}");
    assert!(matches!(
        err("reg.io\0"),
        AddressError::ControlCharacter { .. }
    ));
    assert!(matches!(
        err("reg\u{7f}"),
        AddressError::ControlCharacter { .. }
    ));
}

#[test]
fn non_ascii_look_alikes_are_rejected() {
    // Given a fullwidth "ｑ" that looks like "q", then it is named with its code point.
    let e = err("\u{ff51}uay.io");
    assert_eq!(e, AddressError::NonAscii { ch: '\u{ff51}' });
    let message = e.to_string();
    assert!(message.contains("U+FF51"), "{message}");
    assert!(message.contains("plain ASCII"), "{message}");
    assert!(matches!(err("rеg.io"), AddressError::NonAscii { .. })); // Cyrillic е
    assert!(matches!(err("bücher.de"), AddressError::NonAscii { .. }));
}

#[test]
fn wildcard_is_rejected() {
    let e = err("*.reg.io");
    assert_eq!(e, AddressError::Wildcard);
    assert!(e
        .to_string()
        .starts_with("address must not contain a wildcard \"*\""));
    assert_eq!(err("reg.io:*"), AddressError::Wildcard);
}

#[test]
fn dns_names_are_accepted_and_lower_cased() {
    assert_eq!(canonical("Reg.Example.COM"), "reg.example.com");
    assert_eq!(canonical("localhost"), "localhost");
    assert_eq!(canonical("my-reg.io:5000"), "my-reg.io:5000");
    assert_eq!(canonical("1reg.io"), "1reg.io");
    assert_eq!(
        canonical("123456789012.dkr.ecr.us-west-2.amazonaws.com"),
        "123456789012.dkr.ecr.us-west-2.amazonaws.com"
    );
}

#[test]
fn dns_labels_are_limited_to_63_characters() {
    let ok = format!("{}.io", "a".repeat(63));
    assert_eq!(canonical(&ok), ok);
    let long = "a".repeat(64);
    let e = err(&format!("{long}.io"));
    assert_eq!(
        e,
        AddressError::LabelTooLong {
            label: long,
            len: 64
        }
    );
    assert!(e.to_string().contains("at most 63"), "{e}");
}

#[test]
fn host_names_are_limited_to_253_characters() {
    // Given four 63-character labels joined by dots, 255 characters.
    let label = "a".repeat(63);
    let long = [label.as_str(); 4].join(".");
    let e = err(&long);
    assert_eq!(e, AddressError::HostTooLong { len: 255 });
    assert!(e.to_string().contains("at most 253"), "{e}");
    let exact = format!("{}.{}", [label.as_str(); 3].join("."), "a".repeat(61));
    assert_eq!(exact.len(), 253);
    assert_eq!(canonical(&exact), exact);
    assert!(matches!(
        err(&format!("{exact}b")),
        AddressError::HostTooLong { len: 254 }
    ));
}

#[test]
fn dns_labels_must_not_start_or_end_with_a_hyphen() {
    let e = err("-reg.io");
    assert_eq!(
        e,
        AddressError::LabelHyphen {
            label: "-reg".to_string()
        }
    );
    assert!(e.to_string().contains("\"-reg\""), "{e}");
    assert!(matches!(err("reg-.io"), AddressError::LabelHyphen { .. }));
    assert!(matches!(
        err("reg.io-:5000"),
        AddressError::LabelHyphen { .. }
    ));
}

#[test]
fn dns_labels_allow_only_letters_digits_and_hyphens() {
    let e = err("my_reg.io");
    assert_eq!(
        e,
        AddressError::LabelCharacter {
            label: "my_reg".to_string(),
            ch: '_'
        }
    );
    assert!(e.to_string().contains("'_'"), "{e}");
    for input in ["reg.io?x", "reg.io#x", "reg%20.io", "reg!.io", "reg.io]"] {
        assert!(
            matches!(err(input), AddressError::LabelCharacter { .. }),
            "{input}"
        );
    }
}

#[test]
fn trailing_dot_is_rejected() {
    let e = err("reg.io.");
    assert_eq!(e, AddressError::TrailingDot);
    assert!(e.to_string().contains("remove the trailing dot"), "{e}");
    assert_eq!(err("reg.io.:5000"), AddressError::TrailingDot);
    assert_eq!(err("."), AddressError::TrailingDot);
}

#[test]
fn empty_labels_are_rejected() {
    assert_eq!(err("reg..io"), AddressError::EmptyLabel);
    assert_eq!(err(".reg.io"), AddressError::EmptyLabel);
    assert!(err("reg..io")
        .to_string()
        .contains("remove the extra \".\""));
}

#[test]
fn ipv4_addresses_are_accepted() {
    assert_eq!(canonical("10.0.0.1"), "10.0.0.1");
    assert_eq!(canonical("127.0.0.1:5000"), "127.0.0.1:5000");
    let address = Address::parse("192.168.1.20:443").expect("valid IPv4 with port");
    assert_eq!(address.host(), "192.168.1.20");
    assert_eq!(address.port(), Some(443));
}

#[test]
fn malformed_ipv4_addresses_are_rejected() {
    for input in [
        "999.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "01.2.3.4",
        "1.2.3.04",
        "5000",
    ] {
        let e = err(input);
        assert_eq!(
            e,
            AddressError::InvalidIpv4 {
                host: input.to_string()
            },
            "{input}"
        );
        assert!(e.to_string().contains("not a valid IPv4 address"), "{e}");
    }
}

#[test]
fn bracketed_ipv6_is_canonicalized() {
    assert_eq!(canonical("[::1]:5000"), "[::1]:5000");
    assert_eq!(canonical("[0:0:0:0:0:0:0:1]"), "[::1]");
    assert_eq!(canonical("[FE80:0000::00AB]:443"), "[fe80::ab]:443");
    let address = Address::parse("[2001:DB8::1]:5000").expect("valid IPv6 with port");
    assert_eq!(address.host(), "[2001:db8::1]");
    assert_eq!(address.port(), Some(5000));
    assert_eq!(Address::parse("[::1]").expect("valid IPv6").port(), None);
}

#[test]
fn unbracketed_ipv6_is_rejected_with_brackets_suggested() {
    let e = err("::1");
    assert_eq!(
        e.to_string(),
        "an IPv6 address must be in brackets: write \"[::1]\""
    );
    assert!(err("2001:DB8::1").to_string().contains("\"[2001:db8::1]\""));
    assert!(err("fe80::1:x").to_string().contains("brackets"));
}

#[test]
fn invalid_bracketed_hosts_are_rejected() {
    let e = err("[zz::1]");
    assert_eq!(
        e,
        AddressError::InvalidIpv6 {
            text: "[zz::1]".to_string()
        }
    );
    assert!(e.to_string().contains("not a valid IPv6 address"), "{e}");
    assert!(matches!(
        err("[fe80::1%eth0]"),
        AddressError::InvalidIpv6 { .. }
    ));
    assert!(matches!(
        err("[10.0.0.1]"),
        AddressError::InvalidIpv6 { .. }
    ));
    assert!(matches!(err("[]"), AddressError::InvalidIpv6 { .. }));
    assert_eq!(err("[::1"), AddressError::UnclosedBracket);
    let e = err("[::1]x");
    assert_eq!(
        e,
        AddressError::AfterBracket {
            rest: "x".to_string()
        }
    );
    assert!(e.to_string().contains("\"x\""), "{e}");
    assert_eq!(err("[::1]:"), AddressError::MissingPort);
}

#[test]
fn more_than_one_colon_is_rejected() {
    let e = err("reg.io:5000:6000");
    assert_eq!(e, AddressError::TooManyColons);
    assert!(e.to_string().contains("remove the extra \":\""), "{e}");
}

#[test]
fn port_must_be_between_1_and_65535() {
    assert_eq!(
        Address::parse("reg:1").expect("lowest port").port(),
        Some(1)
    );
    assert_eq!(
        Address::parse("reg:65535").expect("highest port").port(),
        Some(65535)
    );
    for input in [
        "reg:0",
        "reg:65536",
        "reg:99999",
        "reg:000",
        "reg:123456789012345678901234567890",
    ] {
        let e = err(input);
        assert!(
            matches!(e, AddressError::PortOutOfRange { .. }),
            "{input}: {e}"
        );
        assert!(e.to_string().contains("out of range"), "{e}");
    }
    assert_eq!(
        err("reg:99999").to_string(),
        "port 99999 is out of range: use a number from 1 to 65535"
    );
    assert!(err("reg:0")
        .to_string()
        .starts_with("port 0 is out of range"));
}

#[test]
fn port_must_be_digits_only() {
    for input in ["reg:abc", "reg:+5000", "reg:-1", "reg:50a"] {
        let e = err(input);
        assert!(
            matches!(e, AddressError::InvalidPort { .. }),
            "{input}: {e}"
        );
        assert!(e.to_string().contains("digits only"), "{e}");
    }
    assert!(err("reg:abc").to_string().contains("\"abc\""));
}

#[test]
fn empty_port_says_to_add_or_remove_it() {
    let e = err("reg:");
    assert_eq!(e, AddressError::MissingPort);
    assert!(e.to_string().contains("has no port"), "{e}");
}

#[test]
fn port_without_host_is_rejected() {
    let e = err(":5000");
    assert_eq!(
        e,
        AddressError::MissingHost {
            port: "5000".to_string()
        }
    );
    assert_eq!(
        e.to_string(),
        "address must include a host before \":5000\""
    );
}

#[test]
fn port_is_kept_as_a_number_without_leading_zeros() {
    assert_eq!(canonical("reg.io:05000"), "reg.io:5000");
    assert_eq!(canonical("[::1]:0443"), "[::1]:443");
}

#[test]
fn port_is_part_of_the_address() {
    let with_port = Address::parse("r:5000").expect("valid");
    let without = Address::parse("r").expect("valid");
    assert_ne!(with_port, without);
    assert_eq!(with_port.host(), without.host());
    assert_eq!(without.port(), None);
}

#[test]
fn docker_io_aliases_are_one_registry() {
    for input in [
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io",
        "Docker.IO",
        "INDEX.DOCKER.IO",
    ] {
        let address = Address::parse(input).expect("hub alias");
        assert_eq!(address, Address::docker_hub(), "{input}");
        assert_eq!(address.as_str(), DOCKER_HUB);
        assert!(address.is_docker_hub());
    }
}

#[test]
fn hub_alias_with_a_port_is_not_docker_hub() {
    let address = Address::parse("docker.io:443").expect("valid");
    assert_eq!(address.as_str(), "docker.io:443");
    assert!(!address.is_docker_hub());
    assert!(!Address::parse("index.docker.io:443")
        .expect("valid")
        .is_docker_hub());
    assert!(!Address::parse("hub.docker.io")
        .expect("valid")
        .is_docker_hub());
}

#[test]
fn display_and_as_str_give_the_canonical_text() {
    let address: Address = "Reg.IO:0080".parse().expect("valid");
    assert_eq!(address.to_string(), "reg.io:80");
    assert_eq!(address.as_str(), "reg.io:80");
    assert_eq!(address.host(), "reg.io");
}

#[test]
fn canonical_values_replay_unchanged() {
    let stored = Address::parse("[::1]:5000")
        .expect("valid")
        .as_str()
        .to_string();
    let replayed = Address::from_canonical_unchecked(stored.clone());
    assert_eq!(
        replayed,
        Address::parse(&stored).expect("canonical text parses")
    );
    assert_eq!(replayed.port(), Some(5000));
}

#[test]
fn kind_names_are_the_wire_names() {
    let names: Vec<&str> = RegistryKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(names, ["DOCKER_HUB", "QUAY", "CUSTOM", "ECR", "GCR"]);
    for kind in RegistryKind::ALL {
        assert_eq!(RegistryKind::from_name(kind.as_str()), Some(kind));
        assert_eq!(kind.to_string(), kind.as_str());
    }
    assert_eq!(RegistryKind::from_name("docker_hub"), None);
}

#[test]
fn docker_hub_kind_accepts_empty_or_any_alias() {
    for input in [
        "",
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io",
        "DOCKER.IO",
    ] {
        let address = Address::for_kind(RegistryKind::DockerHub, input).expect("hub");
        assert!(address.is_docker_hub(), "{input}");
    }
}

#[test]
fn docker_hub_kind_rejects_other_addresses() {
    let message = kind_err(RegistryKind::DockerHub, "quay.io");
    assert!(
        message.starts_with("a DOCKER_HUB registry's address is index.docker.io"),
        "{message}"
    );
    assert!(message.contains("\"quay.io\""), "{message}");
    assert!(kind_err(RegistryKind::DockerHub, "docker.io:443").contains("index.docker.io"));
    // Given a malformed hub address, then the parse error says what to remove.
    assert!(kind_err(RegistryKind::DockerHub, "https://docker.io").contains("remove \"https://\""));
}

#[test]
fn quay_kind_accepts_empty_or_quay_io_only() {
    assert_eq!(
        Address::for_kind(RegistryKind::Quay, "")
            .expect("quay")
            .as_str(),
        QUAY
    );
    assert_eq!(
        Address::for_kind(RegistryKind::Quay, "Quay.io")
            .expect("quay")
            .as_str(),
        QUAY
    );
    let message = kind_err(RegistryKind::Quay, "quay.io:443");
    assert!(
        message.starts_with("a QUAY registry's address is quay.io"),
        "{message}"
    );
    assert!(kind_err(RegistryKind::Quay, "docker.io").contains("\"docker.io\""));
}

#[test]
fn custom_kind_requires_an_address() {
    assert_eq!(
        Address::for_kind(RegistryKind::Custom, ""),
        Err(AddressError::Required)
    );
    let address = Address::for_kind(RegistryKind::Custom, "Reg.io:5000").expect("custom");
    assert_eq!(address.as_str(), "reg.io:5000");
    assert!(kind_err(RegistryKind::Custom, "reg.io/v2").contains("remove \"/v2\""));
}

#[test]
fn ecr_kind_accepts_account_region_hosts() {
    for (input, region) in [
        ("123456789012.dkr.ecr.us-west-2.amazonaws.com", "us-west-2"),
        (
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
            "us-gov-west-1",
        ),
        (
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
            "cn-north-1",
        ),
        (
            "123456789012.DKR.ECR.AP-SOUTHEAST-1.AMAZONAWS.COM",
            "ap-southeast-1",
        ),
    ] {
        let address = Address::for_kind(RegistryKind::Ecr, input).expect("ecr");
        assert_eq!(address.ecr_region(), Some(region), "{input}");
    }
}

#[test]
fn ecr_kind_rejects_other_shapes_naming_the_expected_form() {
    for input in [
        "12345678901.dkr.ecr.us-west-2.amazonaws.com",
        "1234567890123.dkr.ecr.us-west-2.amazonaws.com",
        "12345678901a.dkr.ecr.us-west-2.amazonaws.com",
        "123456789012.dkr.ecr.uswest2.amazonaws.com",
        "123456789012.dkr.ecr.us-west-22.amazonaws.com",
        "123456789012.dkr.ecr.usa-west-2.amazonaws.com",
        "123456789012.dkr.ecr.us-west-2.amazonaws.org",
        "123456789012.dkr.ecr-gov.us-west-2.amazonaws.com",
        "x.123456789012.dkr.ecr.us-west-2.amazonaws.com",
        "quay.io",
    ] {
        let message = kind_err(RegistryKind::Ecr, input);
        assert!(message.starts_with("an ECR registry's address must look like <12-digit account>.dkr.ecr.<region>.amazonaws.com"), "{message}");
        assert!(message.contains(input), "{message}");
    }
    assert_eq!(
        Address::for_kind(RegistryKind::Ecr, ""),
        Err(AddressError::Required)
    );
}

#[test]
fn ecr_and_gcr_kinds_reject_a_port_saying_to_remove_it() {
    let e = Address::for_kind(
        RegistryKind::Ecr,
        "123456789012.dkr.ecr.us-west-2.amazonaws.com:443",
    );
    assert_eq!(
        e,
        Err(AddressError::PortNotAllowed {
            kind: RegistryKind::Ecr,
            port: 443
        })
    );
    let message = kind_err(
        RegistryKind::Ecr,
        "123456789012.dkr.ecr.us-west-2.amazonaws.com:443",
    );
    assert_eq!(
        message,
        "an ECR registry's address must not include a port: remove \":443\""
    );
    assert!(kind_err(RegistryKind::Gcr, "gcr.io:443").contains("remove \":443\""));
}

#[test]
fn ecr_region_is_none_for_other_addresses() {
    for input in [
        "quay.io",
        "gcr.io",
        "[::1]",
        "10.0.0.1:5000",
        "123456789012.dkr.ecr.us-west-2.amazonaws.com:443",
    ] {
        assert_eq!(
            Address::parse(input).expect("valid").ecr_region(),
            None,
            "{input}"
        );
    }
}

#[test]
fn gcr_kind_accepts_gcr_and_artifact_registry_hosts() {
    for input in [
        "gcr.io",
        "us.gcr.io",
        "eu.gcr.io",
        "asia.gcr.io",
        "us-central1-docker.pkg.dev",
        "northamerica-northeast2-docker.pkg.dev",
        "us-docker.pkg.dev",
        "europe-docker.pkg.dev",
        "asia-docker.pkg.dev",
        "GCR.IO",
    ] {
        assert!(
            Address::for_kind(RegistryKind::Gcr, input).is_ok(),
            "{input}"
        );
    }
}

#[test]
fn gcr_kind_rejects_other_shapes_naming_the_expected_form() {
    for input in [
        "au.gcr.io",
        "x.us.gcr.io",
        "docker.pkg.dev",
        "mars-docker.pkg.dev",
        "us-central-docker.pkg.dev",
        "us-central1-docker.pkg.dev.evil.com",
        "a.us-central1-docker.pkg.dev",
        "quay.io",
    ] {
        let message = kind_err(RegistryKind::Gcr, input);
        assert!(
            message.starts_with("a GCR registry's address must be gcr.io"),
            "{message}"
        );
        assert!(message.contains("<location>-docker.pkg.dev"), "{message}");
    }
}

fn plausible_address() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9-]{1,12}(\\.[a-zA-Z0-9-]{1,12}){0,3}(:0{0,2}[0-9]{1,5})?",
        any::<[u8; 4]>().prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        (any::<[u16; 8]>(), proptest::option::of(1u16..)).prop_map(|(s, port)| {
            let ip = Ipv6Addr::from(s);
            // Spelled out in full so the canonical form has something to compress.
            let full = s
                .iter()
                .map(|x| format!("{x:X}"))
                .collect::<Vec<_>>()
                .join(":");
            assert_eq!(full.parse::<Ipv6Addr>().ok(), Some(ip));
            match port {
                Some(port) => format!("[{full}]:{port}"),
                None => format!("[{full}]"),
            }
        }),
        Just("Docker.io".to_string()),
        Just("registry-1.docker.io".to_string()),
    ]
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_strings(input in any::<String>()) {
        let _ = Address::parse(&input);
        for kind in RegistryKind::ALL {
            let _ = Address::for_kind(kind, &input);
        }
    }

    #[test]
    fn parse_never_panics_on_address_like_strings(input in "[a-z0-9.:\\[\\]/@*-]{0,40}") {
        if let Ok(address) = Address::parse(&input) {
            let _ = (address.host(), address.port(), address.ecr_region());
        }
    }

    #[test]
    fn canonical_form_is_idempotent(input in plausible_address()) {
        let first = Address::parse(&input);
        if let Ok(address) = &first {
            prop_assert_eq!(Address::parse(address.as_str()), first.clone());
            prop_assert!(address.as_str().bytes().all(|b| !b.is_ascii_uppercase()));
        }
    }

    #[test]
    fn canonical_form_is_idempotent_for_arbitrary_strings(input in any::<String>()) {
        if let Ok(address) = Address::parse(&input) {
            prop_assert_eq!(Address::parse(address.as_str()), Ok(address));
        }
    }

    #[test]
    fn host_and_port_rebuild_the_address(input in plausible_address()) {
        if let Ok(address) = Address::parse(&input) {
            let rebuilt = match address.port() {
                Some(port) => format!("{}:{port}", address.host()),
                None => address.host().to_string(),
            };
            prop_assert_eq!(rebuilt, address.as_str());
        }
    }

    #[test]
    fn case_does_not_change_the_address(input in plausible_address()) {
        prop_assert_eq!(Address::parse(&input.to_ascii_uppercase()), Address::parse(&input.to_ascii_lowercase()));
    }
}
