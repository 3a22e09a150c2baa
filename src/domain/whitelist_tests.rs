//! Tests of `whitelist.rs`: a table of entries and matches with property
//! tests, long because the table is; one job, kept whole.

use super::*;
use proptest::prelude::*;

fn addr(s: &str) -> Address {
    Address::parse(s).expect("test address is valid")
}

fn list(entries: &[&str]) -> Whitelist {
    Whitelist::parse(entries).expect("test whitelist is valid")
}

fn entry(s: &str) -> WhitelistEntry {
    WhitelistEntry::parse(s).expect("test entry is valid")
}

fn list_err(entries: &[&str]) -> WhitelistError {
    match Whitelist::parse(entries) {
        Ok(whitelist) => panic!("{entries:?} parsed as {whitelist:?}, expected an error"),
        Err(e) => e,
    }
}

fn fault(s: &str) -> EntryFault {
    match WhitelistEntry::parse(s) {
        Err(WhitelistError::Invalid { fault, .. }) => fault,
        other => panic!("{s:?} gave {other:?}, expected an invalid entry"),
    }
}

#[test]
fn empty_whitelist_allows_every_registry() {
    let whitelist = Whitelist::default();
    assert!(whitelist.is_empty());
    assert!(whitelist.allows(&Address::docker_hub(), "library/ubuntu"));
    assert!(whitelist.allows(&addr("anything.example:5000"), "x"));
}

#[test]
fn exact_entry_allows_only_that_registry() {
    let whitelist = list(&["myreg.io"]);
    assert!(whitelist.allows(&addr("myreg.io"), "app"));
    assert!(whitelist.allows(&addr("MyReg.IO"), "team/app"));
    assert!(!whitelist.allows(&addr("other.io"), "app"));
}

#[test]
fn exact_entry_does_not_allow_a_longer_host() {
    let whitelist = list(&["myreg.io"]);
    for host in [
        "myreg.io.evil.com",
        "evilmyreg.io",
        "x.myreg.io",
        "myreg.iox",
    ] {
        assert!(!whitelist.allows(&addr(host), "app"), "{host}");
    }
}

#[test]
fn exact_entry_port_must_match_exactly() {
    let whitelist = list(&["myreg.io:5000"]);
    assert!(whitelist.allows(&addr("myreg.io:05000"), "app"));
    assert!(!whitelist.allows(&addr("myreg.io"), "app"));
    assert!(!whitelist.allows(&addr("myreg.io:5001"), "app"));
    assert!(!list(&["myreg.io"]).allows(&addr("myreg.io:5000"), "app"));
}

#[test]
fn docker_hub_is_allowed_only_if_listed() {
    let hub = Address::docker_hub();
    assert!(!list(&["quay.io"]).allows(&hub, "library/ubuntu"));
    for alias in [
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io",
        "Docker.IO",
    ] {
        let whitelist = list(&["quay.io", alias]);
        assert!(whitelist.allows(&hub, "library/ubuntu"), "{alias}");
        assert_eq!(whitelist.to_strings(), ["quay.io", "index.docker.io"]);
    }
    // Given Hub's address with a port, then it is a different registry, not Hub.
    assert!(!list(&["docker.io:443"]).allows(&hub, "library/ubuntu"));
}

#[test]
fn glob_star_stands_for_exactly_one_label() {
    let whitelist = list(&["*.dkr.ecr.*.amazonaws.com"]);
    assert!(whitelist.allows(&addr("123456789012.dkr.ecr.us-west-2.amazonaws.com"), "app"));
    assert!(whitelist.allows(&addr("210987654321.dkr.ecr.eu-west-1.amazonaws.com"), "a/b"));
    assert!(!whitelist.allows(&addr("a.b.dkr.ecr.us-west-2.amazonaws.com"), "app"));
    assert!(!whitelist.allows(&addr("dkr.ecr.us-west-2.amazonaws.com"), "app"));
    assert!(!whitelist.allows(&addr("1.dkr.ecr.us-west-2.amazonaws.com.evil.com"), "app"));
    assert!(!whitelist.allows(&addr("1.dkr.ecr.us-west-2.amazonaws.com.cn"), "app"));
}

#[test]
fn glob_requires_the_same_number_of_labels() {
    let whitelist = list(&["*.gcr.io"]);
    assert!(whitelist.allows(&addr("us.gcr.io"), "p/img"));
    assert!(!whitelist.allows(&addr("gcr.io"), "p/img"));
    assert!(!whitelist.allows(&addr("a.us.gcr.io"), "p/img"));
    let lone = list(&["*"]);
    assert!(lone.allows(&addr("localhost"), "app"));
    assert!(!lone.allows(&addr("reg.io"), "app"));
}

#[test]
fn glob_ports_must_match_exactly() {
    let with_port = list(&["*.corp.io:5000"]);
    assert!(with_port.allows(&addr("reg.corp.io:5000"), "app"));
    assert!(!with_port.allows(&addr("reg.corp.io"), "app"));
    assert!(!with_port.allows(&addr("reg.corp.io:5001"), "app"));
    let without = list(&["*.corp.io"]);
    assert!(without.allows(&addr("reg.corp.io"), "app"));
    assert!(!without.allows(&addr("reg.corp.io:5000"), "app"));
}

#[test]
fn glob_is_lower_cased() {
    assert_eq!(
        entry("*.Corp.IO:05000"),
        WhitelistEntry::Glob {
            labels: vec!["*".to_string(), "corp".to_string(), "io".to_string()],
            port: Some(5000),
        }
    );
    assert_eq!(entry("*.Corp.IO:05000").to_string(), "*.corp.io:5000");
    assert!(list(&["*.CORP.io"]).allows(&addr("Reg.Corp.Io"), "app"));
}

#[test]
fn glob_never_matches_an_ipv6_host() {
    assert!(!list(&["*"]).allows(&addr("[::1]"), "app"));
    assert!(!list(&["*:5000"]).allows(&addr("[::1]:5000"), "app"));
}

#[test]
fn glob_matching_docker_hub_allows_docker_hub() {
    assert!(list(&["*.docker.io"]).allows(&Address::docker_hub(), "library/ubuntu"));
    assert!(!list(&["*.io"]).allows(&Address::docker_hub(), "library/ubuntu"));
}

#[test]
fn partial_wildcard_is_rejected_with_a_clear_message() {
    let e = list_err(&["quay.io", "a*.io"]);
    assert_eq!(e.position(), Some(2));
    let message = e.to_string();
    assert!(
        message
            .starts_with("whitelist entry 2 (\"a*.io\"): \"*\" must stand for a whole DNS label"),
        "{message}"
    );
    assert!(message.contains("\"a*\""), "{message}");
    assert_eq!(
        fault("*a.io"),
        EntryFault::PartialWildcard {
            label: "*a".to_string()
        }
    );
    assert!(matches!(fault("**.io"), EntryFault::PartialWildcard { .. }));
}

#[test]
fn glob_labels_must_be_valid_dns_labels() {
    assert_eq!(
        fault("*.my_reg.io"),
        EntryFault::Address(AddressError::LabelCharacter {
            label: "my_reg".to_string(),
            ch: '_'
        })
    );
    assert!(matches!(
        fault("*.-a.io"),
        EntryFault::Address(AddressError::LabelHyphen { .. })
    ));
    assert_eq!(
        fault("*..io"),
        EntryFault::Address(AddressError::EmptyLabel)
    );
    assert_eq!(
        fault("*.io."),
        EntryFault::Address(AddressError::TrailingDot)
    );
    assert!(matches!(
        fault(&format!("*.{}.io", "a".repeat(64))),
        EntryFault::Address(AddressError::LabelTooLong { len: 64, .. })
    ));
    let long = format!("*.{}", vec!["a".repeat(63); 4].join("."));
    assert!(matches!(
        fault(&long),
        EntryFault::Address(AddressError::HostTooLong { .. })
    ));
    assert!(matches!(
        fault(":5000*"),
        EntryFault::Address(AddressError::MissingHost { .. })
    ));
}

#[test]
fn glob_ports_are_validated() {
    assert_eq!(fault("*.io:*"), EntryFault::WildcardPort);
    assert!(fault("*.io:*")
        .to_string()
        .contains("cannot stand for a port"));
    assert!(matches!(
        fault("*.io:0"),
        EntryFault::Address(AddressError::PortOutOfRange { .. })
    ));
    assert!(matches!(
        fault("*.io:99999"),
        EntryFault::Address(AddressError::PortOutOfRange { .. })
    ));
    assert_eq!(
        fault("*.io:"),
        EntryFault::Address(AddressError::MissingPort)
    );
    assert_eq!(
        fault("*.io:1:2"),
        EntryFault::Address(AddressError::TooManyColons)
    );
    assert_eq!(fault("[*::1]"), EntryFault::WildcardIpv6);
}

#[test]
fn glob_cannot_be_used_as_a_prefix() {
    let e = list_err(&["*.io/x/"]);
    assert_eq!(
        e,
        WhitelistError::Invalid {
            position: Some(1),
            entry: "*.io/x/".to_string(),
            fault: EntryFault::GlobPrefix,
        }
    );
    assert!(
        e.to_string()
            .contains("cannot be used as a repository prefix"),
        "{e}"
    );
    assert_eq!(fault("*.io/"), EntryFault::GlobPrefix);
}

#[test]
fn prefix_matches_on_path_boundaries_only() {
    let whitelist = list(&["quay.io/myorg/"]);
    let quay = addr("quay.io");
    assert!(whitelist.allows(&quay, "myorg/x"));
    assert!(whitelist.allows(&quay, "myorg/sub/x"));
    assert!(!whitelist.allows(&quay, "myorgevil/x"));
    assert!(!whitelist.allows(&quay, "other/x"));
    assert!(!whitelist.allows(&quay, "x/myorg/y"));
}

#[test]
fn prefix_allows_only_repositories_beneath_it() {
    let whitelist = list(&["quay.io/myorg/"]);
    let quay = addr("quay.io");
    // Given the organisation's own name as the repository, then it lies at the prefix, not
    // beneath it.
    assert!(!whitelist.allows(&quay, "myorg"));
    assert!(!whitelist.allows(&quay, "myorg/"));
    assert!(!whitelist.allows(&quay, ""));
}

#[test]
fn nested_prefix_matches_deeper_paths_only() {
    let whitelist = list(&["reg.io:5000/team/project/"]);
    assert!(whitelist.allows(&addr("reg.io:5000"), "team/project/app"));
    assert!(!whitelist.allows(&addr("reg.io:5000"), "team/other/app"));
    assert!(!whitelist.allows(&addr("reg.io:5000"), "team/projectx/app"));
    assert!(!whitelist.allows(&addr("reg.io"), "team/project/app"));
}

#[test]
fn malformed_repositories_never_match_a_prefix() {
    let whitelist = list(&["quay.io/myorg/"]);
    let quay = addr("quay.io");
    for repository in [
        "myorg/../other/x",
        "myorg//x",
        "myorg/./x",
        "myorg/X",
        "myorg/x/",
        "/myorg/x",
        "myorg/x y",
    ] {
        assert!(!whitelist.allows(&quay, repository), "{repository}");
    }
}

#[test]
fn prefix_requires_the_same_registry() {
    let whitelist = list(&["docker.io/library/"]);
    assert!(whitelist.allows(&Address::docker_hub(), "library/ubuntu"));
    assert!(!whitelist.allows(&Address::docker_hub(), "someone/ubuntu"));
    assert!(!whitelist.allows(&addr("quay.io"), "library/ubuntu"));
    assert_eq!(whitelist.to_strings(), ["index.docker.io/library/"]);
}

#[test]
fn registry_with_a_bare_slash_is_the_exact_entry() {
    assert_eq!(entry("quay.io/"), WhitelistEntry::Exact(addr("quay.io")));
    assert_eq!(list(&["quay.io/", "quay.io"]).entries().len(), 1);
}

#[test]
fn prefix_path_components_are_validated() {
    assert_eq!(
        fault("quay.io/MyOrg/"),
        EntryFault::InvalidPathComponent {
            component: "MyOrg".to_string()
        }
    );
    let message = WhitelistEntry::parse("quay.io/MyOrg/")
        .expect_err("uppercase path")
        .to_string();
    assert!(message.contains("\"MyOrg\""), "{message}");
    assert!(message.contains("lowercase"), "{message}");
    assert!(matches!(
        fault("quay.io/a@b/"),
        EntryFault::InvalidPathComponent { .. }
    ));
    assert!(matches!(
        fault("quay.io/a:b/"),
        EntryFault::InvalidPathComponent { .. }
    ));
    assert_eq!(fault("quay.io/myorg/*"), EntryFault::PathWildcard);
    assert!(fault("quay.io/*/app/")
        .to_string()
        .contains("\"*\" is not allowed in a repository path"));
    assert_eq!(fault("quay.io/a//b/"), EntryFault::EmptyPathComponent);
    assert_eq!(fault("quay.io//"), EntryFault::EmptyPathComponent);
    assert_eq!(
        fault("quay.io/../"),
        EntryFault::DotPathComponent {
            component: "..".to_string()
        }
    );
    assert!(matches!(
        fault("quay.io/./x/"),
        EntryFault::DotPathComponent { .. }
    ));
    assert_eq!(
        entry("quay.io/my-org_1.x/").to_string(),
        "quay.io/my-org_1.x/"
    );
}

#[test]
fn prefix_without_trailing_slash_says_to_add_it() {
    let e = fault("Quay.io/myorg");
    assert_eq!(
        e,
        EntryFault::MissingTrailingSlash {
            suggestion: "quay.io/myorg/".to_string()
        }
    );
    assert!(
        e.to_string()
            .contains("must end with \"/\": write \"quay.io/myorg/\""),
        "{e}"
    );
}

#[test]
fn prefix_registry_must_be_a_valid_address() {
    assert!(matches!(
        fault("/myorg/"),
        EntryFault::Address(AddressError::Required)
    ));
    assert!(matches!(
        fault("quay.io:0/myorg/"),
        EntryFault::Address(AddressError::PortOutOfRange { .. })
    ));
}

#[test]
fn entry_with_a_scheme_is_rejected_with_the_address_message() {
    let message = list_err(&["https://quay.io/myorg/"]).to_string();
    assert_eq!(
        message,
        "whitelist entry 1 (\"https://quay.io/myorg/\"): address must not include a scheme: remove \"https://\""
    );
    assert!(list_err(&["user@quay.io/x/"])
        .to_string()
        .contains("remove \"user@\""));
    assert!(list_err(&["quay .io"])
        .to_string()
        .contains("must not contain whitespace"));
    assert!(list_err(&["\u{ff51}uay.io"]).to_string().contains("U+FF51"));
}

#[test]
fn entry_password_is_never_echoed() {
    let message = list_err(&["admin:s3cret@quay.io"]).to_string();
    assert!(!message.contains("s3cret"), "{message}");
    assert!(message.contains("admin:***@"), "{message}");
}

#[test]
fn standalone_entry_error_has_no_position() {
    let e = WhitelistEntry::parse("a*.io").expect_err("partial wildcard");
    assert_eq!(e.position(), None);
    assert!(
        e.to_string().starts_with("whitelist entry (\"a*.io\"): "),
        "{e}"
    );
}

#[test]
fn entries_are_trimmed_of_surrounding_whitespace() {
    assert_eq!(
        list(&["  quay.io \t", "\n*.gcr.io"]).to_strings(),
        ["quay.io", "*.gcr.io"]
    );
    assert_eq!(entry(" quay.io/myorg/ "), entry("quay.io/myorg/"));
}

#[test]
fn empty_entries_are_rejected_naming_their_position() {
    let e = list_err(&["quay.io", "  "]);
    assert_eq!(e, WhitelistError::Empty { position: Some(2) });
    assert_eq!(e.to_string(), "whitelist entry 2 is empty: remove it");
    assert_eq!(list_err(&[""]).position(), Some(1));
}

#[test]
fn duplicates_are_removed_keeping_first_order() {
    let whitelist = list(&[
        "quay.io",
        "docker.io",
        "Quay.IO",
        "index.docker.io",
        "*.io",
        "*.IO",
        "quay.io/",
    ]);
    assert_eq!(
        whitelist.to_strings(),
        ["quay.io", "index.docker.io", "*.io"]
    );
}

#[test]
fn comma_separated_form_is_split_and_trimmed() {
    let whitelist =
        Whitelist::parse_comma_separated("quay.io, *.gcr.io ,reg.io:5000/team/").expect("valid");
    assert_eq!(
        whitelist.to_strings(),
        ["quay.io", "*.gcr.io", "reg.io:5000/team/"]
    );
    assert_eq!(
        Whitelist::parse_comma_separated(""),
        Ok(Whitelist::default())
    );
    assert_eq!(
        Whitelist::parse_comma_separated("  "),
        Ok(Whitelist::default())
    );
    let e = Whitelist::parse_comma_separated("quay.io,,gcr.io").expect_err("empty middle entry");
    assert_eq!(e, WhitelistError::Empty { position: Some(2) });
    let e = Whitelist::parse_comma_separated("quay.io, a*.io").expect_err("partial wildcard");
    assert!(
        e.to_string().starts_with("whitelist entry 2 (\"a*.io\")"),
        "{e}"
    );
}

#[test]
fn canonical_text_parses_back_to_the_same_whitelist() {
    let whitelist = list(&[
        "Docker.io",
        "*.Dkr.ECR.*.amazonaws.com",
        "[0:0::1]:05000",
        "quay.io/org/team/",
        "r:1/",
    ]);
    let strings = whitelist.to_strings();
    assert_eq!(
        strings,
        [
            "index.docker.io",
            "*.dkr.ecr.*.amazonaws.com",
            "[::1]:5000",
            "quay.io/org/team/",
            "r:1"
        ]
    );
    assert_eq!(Whitelist::parse(&strings), Ok(whitelist));
}

#[test]
fn exact_ipv6_entry_matches_its_canonical_address() {
    assert!(list(&["[0:0::1]:5000"]).allows(&addr("[::1]:5000"), "app"));
    assert!(!list(&["[::1]:5000"]).allows(&addr("[::2]:5000"), "app"));
}

proptest! {
    #[test]
    fn entry_parse_never_panics(input in any::<String>()) {
        let _ = WhitelistEntry::parse(&input);
        let _ = Whitelist::parse_comma_separated(&input);
    }

    #[test]
    fn entry_parse_never_panics_on_entry_like_strings(input in "[a-zA-Z0-9.:/*@\\[\\]-]{0,40}") {
        if let Ok(entry) = WhitelistEntry::parse(&input) {
            prop_assert_eq!(WhitelistEntry::parse(&entry.to_string()), Ok(entry));
        }
    }

    #[test]
    fn entry_text_round_trips(input in "(\\*|[a-zA-Z0-9]{1,8})(\\.(\\*|[a-z0-9]{1,8})){0,3}(:[0-9]{1,5})?(/([a-z0-9]{1,6}/){0,3})?") {
        if let Ok(entry) = WhitelistEntry::parse(&input) {
            prop_assert_eq!(WhitelistEntry::parse(&entry.to_string()), Ok(entry));
        }
    }

    #[test]
    fn exact_entry_never_allows_a_host_that_extends_it(
        host in "[a-z][a-z0-9]{0,8}\\.[a-z]{2,4}",
        suffix in "[a-z][a-z0-9]{0,7}",
    ) {
        let whitelist = list(&[host.as_str()]);
        for other in [format!("{host}.{suffix}"), format!("{suffix}.{host}"), format!("{host}{suffix}")] {
            prop_assert!(!whitelist.allows(&addr(&other), "app"), "{} allowed {}", host, other);
        }
    }

    #[test]
    fn prefix_allows_exactly_the_repositories_beneath_it(
        org in "[a-z0-9]{1,8}",
        extra in "[a-z0-9_-]{1,8}",
        rest in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}",
    ) {
        let whitelist = list(&[format!("quay.io/{org}/").as_str()]);
        let quay = addr("quay.io");
        let inside = format!("{org}/{rest}");
        let beside = format!("{org}{extra}/{rest}");
        prop_assert!(whitelist.allows(&quay, &inside));
        prop_assert!(!whitelist.allows(&quay, &beside));
    }
}

#[test]
fn a_registry_without_a_repository_is_allowed_by_exact_glob_or_prefix_entries() {
    let list = Whitelist::parse(["reg:5000", "*.example.com", "quay.io/myorg/"]).unwrap();
    let allowed = |a: &str| list.allows_registry(&Address::parse(a).unwrap());
    assert!(allowed("reg:5000"));
    assert!(allowed("a.example.com"));
    assert!(allowed("quay.io"));
    assert!(!allowed("reg"));
    assert!(!allowed("index.docker.io"));
    assert!(!allowed("quay.io.evil.com"));
    assert!(Whitelist::default().allows_registry(&Address::docker_hub()));
}
