//! Addresses, ports and whitelists.

use crate::domain::address::{self, Address, RegistryKind, DOCKER_HUB};
use crate::domain::whitelist::{Whitelist, WhitelistEntry, WhitelistError};

/// Addresses, ports and whitelists: canonical forms parse back to
/// themselves, every kind's address is canonical and of its shape, and a
/// refusal reads the same whatever the password in user info was.
pub fn address(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    check_address(input);
    for kind in RegistryKind::ALL {
        check_address_for_kind(kind, input);
    }
    check_port(input);
    check_whitelist(input);
}

fn check_address(input: &str) {
    let parsed = Address::parse(input);
    assert_independent_of_password(input, |text| {
        Address::parse(text).map(drop).map_err(|e| e.to_string())
    });
    let Ok(address) = parsed else {
        return;
    };
    let canonical = address.as_str();
    assert_eq!(
        Address::parse(canonical).as_ref(),
        Ok(&address),
        "canonical form of {input:?}"
    );
    assert!(
        canonical
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()),
        "{input:?} became {canonical:?}"
    );
    let host = address.host();
    assert!(!host.is_empty(), "{input:?} has no host");
    match address.port() {
        Some(port) => {
            assert!(port >= 1, "{input:?}");
            assert_eq!(canonical, format!("{host}:{port}"), "{input:?}");
        }
        None => assert_eq!(canonical, host, "{input:?}"),
    }
    if !host.starts_with('[') {
        assert!(host.len() <= address::MAX_HOST_LEN, "{input:?}: {host:?}");
    }
    if ["docker.io", "index.docker.io", "registry-1.docker.io"].contains(&canonical) {
        assert!(address.is_docker_hub(), "{input:?} is Docker Hub");
    }
}

fn check_address_for_kind(kind: RegistryKind, input: &str) {
    let Ok(address) = Address::for_kind(kind, input) else {
        return;
    };
    assert_eq!(
        Address::for_kind(kind, address.as_str()).as_ref(),
        Ok(&address),
        "{kind} address of {input:?}"
    );
    match kind {
        RegistryKind::DockerHub => assert_eq!(address.as_str(), DOCKER_HUB),
        RegistryKind::Quay => assert_eq!(address.as_str(), address::QUAY),
        RegistryKind::Custom => assert_eq!(Address::parse(input).as_ref(), Ok(&address)),
        RegistryKind::Ecr => {
            assert!(address.ecr_region().is_some(), "{input:?}");
            assert_eq!(address.port(), None, "{input:?}");
        }
        RegistryKind::Gcr => assert_eq!(address.port(), None, "{input:?}"),
    }
}

fn check_port(input: &str) {
    let Ok(port) = address::parse_port(input) else {
        return;
    };
    assert!(port >= 1, "{input:?}");
    assert!(input.bytes().all(|b| b.is_ascii_digit()), "{input:?}");
    assert_eq!(
        address::parse_port(&port.to_string()),
        Ok(port),
        "{input:?}"
    );
}

fn check_whitelist(input: &str) {
    let lines: Vec<&str> = input.split('\n').collect();
    match Whitelist::parse(&lines) {
        Ok(whitelist) => check_whitelist_round_trip(input, &whitelist),
        Err(e) => {
            let position = e.position().expect("a list error names its entry");
            assert!(
                (1..=lines.len()).contains(&position),
                "{input:?}: position {position} of {}",
                lines.len()
            );
        }
    }
    match Whitelist::parse_comma_separated(input) {
        Ok(whitelist) => check_whitelist_round_trip(input, &whitelist),
        Err(WhitelistError::Empty { .. }) => {}
        Err(_) => assert_independent_of_password(input, |text| {
            Whitelist::parse_comma_separated(text)
                .map(drop)
                .map_err(|e| e.to_string())
        }),
    }
}

fn check_whitelist_round_trip(input: &str, whitelist: &Whitelist) {
    let strings = whitelist.to_strings();
    assert_eq!(
        Whitelist::parse(&strings).as_ref(),
        Ok(whitelist),
        "{input:?} printed as {strings:?}"
    );
    assert_eq!(
        Whitelist::parse_comma_separated(&strings.join(",")).as_ref(),
        Ok(whitelist),
        "{input:?} printed as {strings:?}"
    );
    for entry in whitelist.entries() {
        let text = entry.to_string();
        assert_eq!(WhitelistEntry::parse(&text).as_ref(), Ok(entry), "{text:?}");
        match entry {
            WhitelistEntry::Exact(address) => {
                assert!(entry.matches(address, "app"), "{text:?}");
                assert!(whitelist.allows_registry(address), "{text:?}");
            }
            WhitelistEntry::Glob { labels, port } => {
                let host = labels
                    .iter()
                    .map(|l| if l == "*" { "x" } else { l.as_str() })
                    .collect::<Vec<_>>()
                    .join(".");
                let probe = match port {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                };
                if let Ok(address) = Address::parse(&probe) {
                    assert!(entry.matches(&address, "app"), "{text:?} and {probe:?}");
                }
            }
            WhitelistEntry::Prefix { registry, path } => {
                assert!(entry.matches(registry, &format!("{path}/app")), "{text:?}");
                assert!(!entry.matches(registry, path), "{text:?} is strictly under");
                assert!(whitelist.allows_registry(registry), "{text:?}");
            }
        }
    }
}

/// Asserts that `parse` answers the same when the password of `user:password@`
/// (letters and digits only, so that nothing else changes) is replaced.
///
/// User info is where the address parser looks for it: in the authority,
/// after a scheme only if no `/` comes before the `://` (or after a leading
/// `//`); an `@` further on belongs to a path.
fn assert_independent_of_password(input: &str, parse: impl Fn(&str) -> Result<(), String>) {
    let authority_start = if input.starts_with("//") {
        2
    } else {
        match input.find("://") {
            Some(at) if !input[..at].contains('/') => at + 3,
            _ => 0,
        }
    };
    let authority_end = input[authority_start..]
        .find('/')
        .map_or(input.len(), |i| authority_start + i);
    let authority = &input[authority_start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return;
    };
    let Some(colon) = authority[..at].find(':') else {
        return;
    };
    let password = &authority[colon + 1..at];
    if password.is_empty() || !password.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return;
    }
    let start = authority_start + colon + 1;
    let other = if password.starts_with('q') { "z" } else { "q" }.repeat(password.len());
    let replaced = format!(
        "{}{other}{}",
        &input[..start],
        &input[start + password.len()..]
    );
    assert_eq!(
        parse(input),
        parse(&replaced),
        "the answer to {input:?} depends on its password"
    );
}
