//! Registry addresses: validation (R3), the canonical form (R4) and what each registry kind accepts (R5).
//! Owns `Address`, `RegistryKind`, `AddressError` and the host, label and port checks the whitelist reuses.
//! About 650 lines: one grammar (host, IPv4, IPv6, port, kinds), kept whole.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The canonical address of Docker Hub, which every Hub alias is displayed as.
pub const DOCKER_HUB: &str = "index.docker.io";

/// The address of a Quay registry.
pub const QUAY: &str = "quay.io";

/// The longest host name DNS allows, in characters.
pub const MAX_HOST_LEN: usize = 253;

/// The longest DNS label allowed, in characters.
pub const MAX_LABEL_LEN: usize = 63;

/// Names that all mean Docker Hub when written without a port (R4).
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Hosts of Google Container Registry; Artifact Registry hosts are matched by shape instead.
const GCR_HOSTS: [&str; 4] = ["gcr.io", "us.gcr.io", "eu.gcr.io", "asia.gcr.io"];

/// Artifact Registry multi-regions, which do not follow the `<area>-<direction><n>` region shape.
const GCR_MULTI_REGIONS: [&str; 3] = ["us", "europe", "asia"];

/// The kind of a registry, which decides which addresses it may have (R5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistryKind {
    /// Docker Hub, whose address is always `index.docker.io`.
    DockerHub,
    /// Quay, whose address is always `quay.io`.
    Quay,
    /// Any other registry; the address is required.
    Custom,
    /// Amazon Elastic Container Registry: `<12-digit account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`.
    Ecr,
    /// Google Container Registry or Artifact Registry.
    Gcr,
}

impl RegistryKind {
    /// Every kind, in declaration order.
    pub const ALL: [RegistryKind; 5] = [
        RegistryKind::DockerHub,
        RegistryKind::Quay,
        RegistryKind::Custom,
        RegistryKind::Ecr,
        RegistryKind::Gcr,
    ];

    /// Returns the kind's wire name: `DOCKER_HUB`, `QUAY`, `CUSTOM`, `ECR` or `GCR`.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryKind::DockerHub => "DOCKER_HUB",
            RegistryKind::Quay => "QUAY",
            RegistryKind::Custom => "CUSTOM",
            RegistryKind::Ecr => "ECR",
            RegistryKind::Gcr => "GCR",
        }
    }

    /// Returns the kind whose wire name is exactly `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Describes the addresses this kind accepts, phrased to follow "a KIND registry's address".
    pub fn expected_form(self) -> &'static str {
        match self {
            RegistryKind::DockerHub => "is index.docker.io",
            RegistryKind::Quay => "is quay.io",
            RegistryKind::Custom => "is a host with an optional port",
            RegistryKind::Ecr => {
                "must look like <12-digit account>.dkr.ecr.<region>.amazonaws.com \
                 (ecr-fips and a .cn suffix are allowed; no port)"
            }
            RegistryKind::Gcr => {
                "must be gcr.io, us.gcr.io, eu.gcr.io, asia.gcr.io or <location>-docker.pkg.dev \
                 (no port)"
            }
        }
    }
}

impl fmt::Display for RegistryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a registry address was rejected; every message says what to remove or fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The address was empty.
    #[error("address is required")]
    Required,
    /// The address contained whitespace somewhere, including at either end.
    #[error("address must not contain whitespace: remove the spaces, tabs or line breaks")]
    Whitespace,
    /// The address contained a control character.
    #[error("address must not contain control character {}: remove it", codepoint(.ch))]
    ControlCharacter {
        /// The offending character.
        ch: char,
    },
    /// The address contained a non-ASCII character, such as a fullwidth look-alike.
    #[error(
        "address must not contain non-ASCII character {ch:?} ({}): retype it in plain ASCII",
        codepoint(.ch)
    )]
    NonAscii {
        /// The offending character.
        ch: char,
    },
    /// The address started with a scheme such as `https://`.
    #[error("address must not include a scheme: remove {scheme:?}")]
    Scheme {
        /// The scheme including `://`.
        scheme: String,
    },
    /// The address included `user@` or `user:password@`.
    #[error(
        "address must not include user info: remove {user_info:?} \
         (credentials belong in the username and password fields)"
    )]
    UserInfo {
        /// The user info including `@`, with any password replaced by `***`.
        user_info: String,
    },
    /// The address included a path such as `/v2/`.
    #[error("address must not include a path: remove {path:?}")]
    Path {
        /// The path, starting at the first `/`.
        path: String,
    },
    /// The address contained `*`.
    #[error(
        "address must not contain a wildcard \"*\": remove it (wildcards belong in the registry whitelist)"
    )]
    Wildcard,
    /// A `[` was never closed.
    #[error("address has \"[\" without a closing \"]\": write an IPv6 address as \"[::1]\"")]
    UnclosedBracket,
    /// Something other than `:port` followed a bracketed IPv6 address.
    #[error(
        "address must not have {rest:?} after \"]\": only \":port\" may follow an IPv6 address"
    )]
    AfterBracket {
        /// The text after `]`.
        rest: String,
    },
    /// The text inside brackets was not an IPv6 address.
    #[error("{text:?} is not a valid IPv6 address")]
    InvalidIpv6 {
        /// The bracketed text.
        text: String,
    },
    /// An IPv6 address was written without brackets.
    #[error("an IPv6 address must be in brackets: write {suggestion:?}")]
    UnbracketedIpv6 {
        /// The address with brackets added.
        suggestion: String,
    },
    /// More than one `:` outside brackets.
    #[error(
        "address must contain at most one \":\", before the port: remove the extra \":\" \
         (an IPv6 address must be in brackets, e.g. \"[::1]:5000\")"
    )]
    TooManyColons,
    /// Nothing came before `:port`.
    #[error("address must include a host before \":{port}\"")]
    MissingHost {
        /// The port text that followed the missing host.
        port: String,
    },
    /// The address ended with `:`.
    #[error(
        "address ends with \":\" but has no port: add a port from 1 to 65535 or remove the \":\""
    )]
    MissingPort,
    /// The port contained something other than digits.
    #[error("port {port:?} must contain digits only: use a number from 1 to 65535")]
    InvalidPort {
        /// The port text.
        port: String,
    },
    /// The port was 0 or above 65535.
    #[error("port {port} is out of range: use a number from 1 to 65535")]
    PortOutOfRange {
        /// The port text.
        port: String,
    },
    /// The host name was longer than 253 characters.
    #[error("host name is {len} characters long: at most 253 are allowed")]
    HostTooLong {
        /// The host name's length.
        len: usize,
    },
    /// The host name ended with `.`.
    #[error("address must not end with \".\": remove the trailing dot")]
    TrailingDot,
    /// Two dots in a row, or a leading dot.
    #[error("address must not contain an empty DNS label: remove the extra \".\"")]
    EmptyLabel,
    /// A DNS label was longer than 63 characters.
    #[error("DNS label {label:?} is {len} characters long: at most 63 are allowed")]
    LabelTooLong {
        /// The label.
        label: String,
        /// The label's length.
        len: usize,
    },
    /// A DNS label started or ended with `-`.
    #[error("DNS label {label:?} must not start or end with \"-\": remove the hyphen")]
    LabelHyphen {
        /// The label.
        label: String,
    },
    /// A DNS label contained a character other than a letter, digit or `-`.
    #[error("DNS label {label:?} must not contain {ch:?}: use only letters, digits and \"-\"")]
    LabelCharacter {
        /// The label.
        label: String,
        /// The offending character.
        ch: char,
    },
    /// A numeric host that is not an IPv4 address.
    #[error(
        "{host:?} is not a valid IPv4 address: use four numbers from 0 to 255 without leading zeros \
         (a host name's last label cannot be all digits)"
    )]
    InvalidIpv4 {
        /// The host.
        host: String,
    },
    /// The address is valid but does not fit the registry's kind.
    #[error("{} {kind} registry's address {}, not {got:?}", article(.kind), .kind.expected_form())]
    KindMismatch {
        /// The registry's kind.
        kind: RegistryKind,
        /// The address as given.
        got: String,
    },
    /// The registry's kind does not allow a port.
    #[error("{} {kind} registry's address must not include a port: remove \":{port}\"", article(.kind))]
    PortNotAllowed {
        /// The registry's kind.
        kind: RegistryKind,
        /// The port that was given.
        port: u16,
    },
}

fn codepoint(ch: &char) -> String {
    format!("U+{:04X}", u32::from(*ch))
}

fn article(kind: &RegistryKind) -> &'static str {
    match kind {
        RegistryKind::Ecr => "an",
        _ => "a",
    }
}

/// A canonical registry address.
///
/// R3: a host with an optional port; the host is a DNS name, an IPv4 address or a bracketed IPv6
/// address. R4: the host is lower-cased, IPv6 is in std's compressed form inside brackets, the
/// port is kept as a number, and the portless Hub aliases become `index.docker.io`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(String);

impl Address {
    /// Parses and canonicalizes a registry address (R3, R4).
    ///
    /// "A registry address is a host with an optional port": schemes, paths, user info,
    /// whitespace, control and non-ASCII characters and `*` are rejected with an error that says
    /// what to remove.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        if input.is_empty() {
            return Err(AddressError::Required);
        }
        check_characters(input)?;
        if let Some(scheme) = scheme_of(input) {
            return Err(AddressError::Scheme {
                scheme: scheme.to_string(),
            });
        }
        // User info can only sit before the first `/`; an `@` after it belongs to the path.
        let (authority, path) = match input.find('/') {
            Some(at) => input.split_at(at),
            None => (input, ""),
        };
        if let Some(at) = authority.rfind('@') {
            return Err(AddressError::UserInfo {
                user_info: redact_user_info(&authority[..=at]).into_owned(),
            });
        }
        if !path.is_empty() {
            return Err(AddressError::Path {
                path: path.to_string(),
            });
        }
        if input.contains('*') {
            return Err(AddressError::Wildcard);
        }
        let (host, port) = split_host_port(input)?;
        Ok(Self::assemble(host, port))
    }

    /// Parses an address and checks that it fits a registry of `kind` (R5).
    ///
    /// DOCKER_HUB and QUAY accept an empty input as their fixed address; CUSTOM requires one;
    /// ECR and GCR accept only their providers' host shapes, without a port.
    pub fn for_kind(kind: RegistryKind, input: &str) -> Result<Self, AddressError> {
        match kind {
            RegistryKind::DockerHub => Self::fixed(kind, DOCKER_HUB, input),
            RegistryKind::Quay => Self::fixed(kind, QUAY, input),
            RegistryKind::Custom => Self::parse(input),
            RegistryKind::Ecr => Self::shaped(kind, input, |a| a.ecr_region().is_some()),
            RegistryKind::Gcr => Self::shaped(kind, input, |a| is_gcr_host(a.host())),
        }
    }

    /// Returns Docker Hub's address, `index.docker.io`.
    pub fn docker_hub() -> Self {
        Self(DOCKER_HUB.to_string())
    }

    /// Wraps a string without checking it.
    ///
    /// Only for values that were canonical when stored, e.g. replaying the log; anything else
    /// must go through [`Address::parse`].
    pub fn from_canonical_unchecked(s: String) -> Self {
        Self(s)
    }

    /// Returns the canonical text of the address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the host without the port; an IPv6 host keeps its brackets.
    pub fn host(&self) -> &str {
        self.split().0
    }

    /// Returns the port, if the address has one.
    pub fn port(&self) -> Option<u16> {
        self.split().1.and_then(|port| port.parse().ok())
    }

    /// Returns whether this is Docker Hub (only the portless address `index.docker.io`).
    pub fn is_docker_hub(&self) -> bool {
        self.0 == DOCKER_HUB
    }

    /// Returns the AWS region of an ECR-shaped address, e.g. `Some("us-west-2")`.
    pub fn ecr_region(&self) -> Option<&str> {
        let (host, port) = self.split();
        if port.is_some() {
            return None;
        }
        let labels: Vec<&str> = host.split('.').collect();
        let (account, ecr, region) = match labels.as_slice() {
            [account, "dkr", ecr, region, "amazonaws", "com"]
            | [account, "dkr", ecr, region, "amazonaws", "com", "cn"] => (*account, *ecr, *region),
            _ => return None,
        };
        let fits = account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && (ecr == "ecr" || ecr == "ecr-fips")
            && is_aws_region(region);
        fits.then_some(region)
    }

    /// Accepts only `address` for a kind whose address is fixed; empty input means `address`.
    fn fixed(kind: RegistryKind, address: &str, input: &str) -> Result<Self, AddressError> {
        if input.is_empty() {
            return Ok(Self(address.to_string()));
        }
        let parsed = Self::parse(input)?;
        if parsed.0 == address {
            Ok(parsed)
        } else {
            Err(AddressError::KindMismatch {
                kind,
                got: input.to_string(),
            })
        }
    }

    /// Accepts a portless address of the provider's shape.
    fn shaped(
        kind: RegistryKind,
        input: &str,
        fits: impl Fn(&Self) -> bool,
    ) -> Result<Self, AddressError> {
        let parsed = Self::parse(input)?;
        if let Some(port) = parsed.port() {
            return Err(AddressError::PortNotAllowed { kind, port });
        }
        if fits(&parsed) {
            Ok(parsed)
        } else {
            Err(AddressError::KindMismatch {
                kind,
                got: input.to_string(),
            })
        }
    }

    fn assemble(host: String, port: Option<u16>) -> Self {
        match port {
            None if DOCKER_HUB_ALIASES.contains(&host.as_str()) => Self::docker_hub(),
            None => Self(host),
            Some(port) => Self(format!("{host}:{port}")),
        }
    }

    /// Splits the canonical text into host and port text.
    fn split(&self) -> (&str, Option<&str>) {
        let text = self.0.as_str();
        if text.starts_with('[') {
            if let Some(close) = text.find(']') {
                let (host, rest) = text.split_at(close + 1);
                return (host, rest.strip_prefix(':'));
            }
            return (text, None);
        }
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for Address {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An address orders and hashes as its canonical text, so maps keyed by
/// addresses are searched with a `&str`.
impl std::borrow::Borrow<str> for Address {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Parses a port: digits only, 1 to 65535; leading zeros are accepted and dropped.
pub fn parse_port(text: &str) -> Result<u16, AddressError> {
    if text.is_empty() {
        return Err(AddressError::MissingPort);
    }
    // Checked by hand because `u16::from_str` also accepts a leading `+`.
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::InvalidPort {
            port: text.to_string(),
        });
    }
    let out_of_range = || AddressError::PortOutOfRange {
        port: text.to_string(),
    };
    // Stripping zeros first keeps a long run of leading zeros from overflowing the parse.
    let significant = text.trim_start_matches('0');
    match significant.parse::<u16>() {
        Ok(0) | Err(_) => Err(out_of_range()),
        Ok(port) => Ok(port),
    }
}

/// Checks one DNS label: 1 to 63 letters, digits or `-`, not starting or ending with `-`.
pub fn validate_dns_label(label: &str) -> Result<(), AddressError> {
    if label.is_empty() {
        return Err(AddressError::EmptyLabel);
    }
    if let Some(ch) = label
        .chars()
        .find(|ch| !(ch.is_ascii_alphanumeric() || *ch == '-'))
    {
        return Err(AddressError::LabelCharacter {
            label: label.to_string(),
            ch,
        });
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(AddressError::LabelTooLong {
            label: label.to_string(),
            len: label.len(),
        });
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(AddressError::LabelHyphen {
            label: label.to_string(),
        });
    }
    Ok(())
}

/// Checks a DNS name: at most 253 characters of valid labels, without a trailing dot.
pub fn validate_dns_name(host: &str) -> Result<(), AddressError> {
    if host.len() > MAX_HOST_LEN {
        return Err(AddressError::HostTooLong { len: host.len() });
    }
    if host.ends_with('.') {
        return Err(AddressError::TrailingDot);
    }
    host.split('.').try_for_each(validate_dns_label)
}

/// Replaces the password in `user:password@` with `***`, so errors and logs never carry it.
pub fn redact_user_info(text: &str) -> Cow<'_, str> {
    let start = scheme_of(text).map_or(0, str::len);
    let (scheme, rest) = text.split_at(start);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return Cow::Borrowed(text);
    };
    match rest[..at].find(':') {
        Some(colon) => Cow::Owned(format!("{scheme}{}:***{}", &rest[..colon], &rest[at..])),
        None => Cow::Borrowed(text),
    }
}

fn check_characters(input: &str) -> Result<(), AddressError> {
    if input.chars().any(char::is_whitespace) {
        return Err(AddressError::Whitespace);
    }
    if let Some(ch) = input.chars().find(|ch| ch.is_control()) {
        return Err(AddressError::ControlCharacter { ch });
    }
    if let Some(ch) = input.chars().find(|ch| !ch.is_ascii()) {
        return Err(AddressError::NonAscii { ch });
    }
    Ok(())
}

/// Returns the scheme prefix (`https://`, or a bare `//`) if the input starts with one.
fn scheme_of(input: &str) -> Option<&str> {
    if input.starts_with("//") {
        return Some("//");
    }
    let at = input.find("://")?;
    // A `://` after the first `/` is part of a path, not a scheme.
    (!input[..at].contains('/')).then(|| &input[..at + 3])
}

fn split_host_port(input: &str) -> Result<(String, Option<u16>), AddressError> {
    if let Some(rest) = input.strip_prefix('[') {
        let close = rest.find(']').ok_or(AddressError::UnclosedBracket)?;
        let (inner, after) = (&rest[..close], &rest[close + 1..]);
        let ip: Ipv6Addr = inner.parse().map_err(|_| AddressError::InvalidIpv6 {
            text: format!("[{inner}]"),
        })?;
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(parse_port(port)?),
                None => {
                    return Err(AddressError::AfterBracket {
                        rest: after.to_string(),
                    })
                }
            },
        };
        return Ok((format!("[{ip}]"), port));
    }
    let (host, port) = match input.split_once(':') {
        None => (input, None),
        Some((host, port)) if !port.contains(':') => (host, Some(port)),
        Some(_) => return Err(unbracketed_ipv6_or_colons(input)),
    };
    if host.is_empty() {
        return Err(AddressError::MissingHost {
            port: port.unwrap_or_default().to_string(),
        });
    }
    let port = port.map(parse_port).transpose()?;
    Ok((canonical_host(host)?, port))
}

fn unbracketed_ipv6_or_colons(input: &str) -> AddressError {
    if let Ok(ip) = input.parse::<Ipv6Addr>() {
        return AddressError::UnbracketedIpv6 {
            suggestion: format!("[{ip}]"),
        };
    }
    if let Some((host, port)) = input.rsplit_once(':') {
        if let (Ok(ip), Ok(port)) = (host.parse::<Ipv6Addr>(), parse_port(port)) {
            return AddressError::UnbracketedIpv6 {
                suggestion: format!("[{ip}]:{port}"),
            };
        }
    }
    AddressError::TooManyColons
}

/// Validates an unbracketed host and returns it lower-cased.
fn canonical_host(host: &str) -> Result<String, AddressError> {
    let host = host.to_ascii_lowercase();
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(ip.to_string());
    }
    validate_dns_name(&host)?;
    // An all-digit last label means the user meant an IPv4 address and mistyped it.
    let last = host.rsplit('.').next().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::InvalidIpv4 { host });
    }
    Ok(host)
}

/// Matches `[a-z]{2}(-[a-z]+)+-\d`, e.g. `us-west-2` or `us-gov-west-1`.
fn is_aws_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return false;
    };
    let letters = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase());
    first.len() == 2
        && letters(first)
        && !middle.is_empty()
        && middle.iter().all(|part| letters(part))
        && last.len() == 1
        && last.bytes().all(|b| b.is_ascii_digit())
}

fn is_gcr_host(host: &str) -> bool {
    if GCR_HOSTS.contains(&host) {
        return true;
    }
    host.strip_suffix("-docker.pkg.dev")
        .is_some_and(|location| GCR_MULTI_REGIONS.contains(&location) || is_gcp_region(location))
}

/// Matches `[a-z]+-[a-z]+[0-9]+`, e.g. `us-central1` or `northamerica-northeast2`.
fn is_gcp_region(location: &str) -> bool {
    let Some((area, rest)) = location.split_once('-') else {
        return false;
    };
    let direction = rest.trim_end_matches(|c: char| c.is_ascii_digit());
    !area.is_empty()
        && area.bytes().all(|b| b.is_ascii_lowercase())
        && !direction.is_empty()
        && direction.bytes().all(|b| b.is_ascii_lowercase())
        && direction.len() < rest.len()
}

#[cfg(test)]
#[path = "address_tests.rs"]
mod tests;
