//! The registry whitelist (R16): which registries, and which repositories in them, images may come from.
//! Owns `Whitelist`, `WhitelistEntry`, `EntryFault` and `WhitelistError`.

use super::address::{parse_port, redact_user_info, validate_dns_name, Address, AddressError};

use std::fmt;
use std::str::FromStr;

/// One whitelist entry: an exact address, a host glob or a repository prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhitelistEntry {
    /// Matches any image whose canonical registry equals this address, port included.
    Exact(Address),
    /// A host pattern where each `*` label stands for exactly one DNS label.
    ///
    /// Matches hosts with the same number of labels and exactly the same port (a pattern without
    /// a port only matches portless addresses).
    Glob {
        /// The lower-cased labels; `*` is a wildcard label.
        labels: Vec<String>,
        /// The port the address must have, or `None` for portless addresses only.
        port: Option<u16>,
    },
    /// Matches images in `registry` whose repository lies under `path`, on `/` boundaries.
    Prefix {
        /// The registry.
        registry: Address,
        /// The repository path without leading or trailing `/`, e.g. `myorg` or `myorg/team`.
        path: String,
    },
}

impl WhitelistEntry {
    /// Parses one entry, trimmed of surrounding whitespace.
    ///
    /// `quay.io` is an exact address, `*.dkr.ecr.*.amazonaws.com` a glob and `quay.io/myorg/`
    /// a repository prefix (`quay.io/` is the same as `quay.io`). The error carries no
    /// position; [`Whitelist::parse`] adds it.
    pub fn parse(s: &str) -> Result<Self, WhitelistError> {
        let text = s.trim();
        if text.is_empty() {
            return Err(WhitelistError::Empty { position: None });
        }
        parse_entry(text).map_err(|fault| WhitelistError::Invalid {
            position: None,
            // The entry is echoed back in the message, so a pasted password must not survive.
            entry: redact_user_info(text).into_owned(),
            fault,
        })
    }

    /// Returns whether an image in `registry` at `repository` (e.g. `myorg/app`) is allowed.
    pub fn matches(&self, registry: &Address, repository: &str) -> bool {
        match self {
            WhitelistEntry::Exact(address) => address == registry,
            WhitelistEntry::Glob { labels, port } => {
                registry.port() == *port && glob_matches(labels, registry.host())
            }
            WhitelistEntry::Prefix {
                registry: prefix_registry,
                path,
            } => prefix_registry == registry && is_under(repository, path),
        }
    }
}

impl fmt::Display for WhitelistEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WhitelistEntry::Exact(address) => write!(f, "{address}"),
            WhitelistEntry::Glob { labels, port } => {
                f.write_str(&labels.join("."))?;
                match port {
                    Some(port) => write!(f, ":{port}"),
                    None => Ok(()),
                }
            }
            WhitelistEntry::Prefix { registry, path } => write!(f, "{registry}/{path}/"),
        }
    }
}

impl FromStr for WhitelistEntry {
    type Err = WhitelistError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The registry whitelist: empty allows every registry, otherwise only what an entry matches.
///
/// Docker Hub is allowed by a non-empty list only if an entry matches `index.docker.io`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Whitelist(Vec<WhitelistEntry>);

impl Whitelist {
    /// Parses every entry, dropping duplicates (after canonicalization) and keeping first order.
    pub fn parse<I: IntoIterator<Item = S>, S: AsRef<str>>(
        entries: I,
    ) -> Result<Self, WhitelistError> {
        let mut parsed: Vec<WhitelistEntry> = Vec::new();
        for (index, text) in entries.into_iter().enumerate() {
            let entry =
                WhitelistEntry::parse(text.as_ref()).map_err(|e| e.at_position(index + 1))?;
            if !parsed.contains(&entry) {
                parsed.push(entry);
            }
        }
        Ok(Self(parsed))
    }

    /// Parses Rancher's comma-separated form, e.g. `"quay.io, *.gcr.io"`; a blank string is empty.
    pub fn parse_comma_separated(s: &str) -> Result<Self, WhitelistError> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        Self::parse(s.split(','))
    }

    /// Returns whether the list is empty, which allows every registry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Returns the entries in their original order.
    pub fn entries(&self) -> &[WhitelistEntry] {
        &self.0
    }

    /// Returns each entry's canonical text, which parses back to the same whitelist.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// Returns whether an image from `registry` may be used.
    ///
    /// `repository` is the image path within the registry, e.g. "library/ubuntu" or "myorg/app";
    /// Docker Hub's official images must already carry their `library/` part.
    pub fn allows(&self, registry: &Address, repository: &str) -> bool {
        self.is_empty()
            || self
                .0
                .iter()
                .any(|entry| entry.matches(registry, repository))
    }
}

impl Whitelist {
    /// Returns whether every repository of `registry` is allowed: the list
    /// is empty, or an exact or glob entry names the registry. A registry
    /// admitted only through repository prefixes is not.
    pub fn admits_whole(&self, registry: &Address) -> bool {
        self.is_empty()
            || self.0.iter().any(|entry| {
                !matches!(entry, WhitelistEntry::Prefix { .. }) && entry.matches(registry, "")
            })
    }

    /// Returns whether a registry may be asked for credentials at all, when
    /// the repository is not known (credential helpers ask by host): an
    /// exact or glob entry matches it, or a prefix entry lies inside it.
    pub fn allows_registry(&self, registry: &Address) -> bool {
        self.is_empty()
            || self.0.iter().any(|entry| match entry {
                WhitelistEntry::Prefix {
                    registry: prefix_registry,
                    ..
                } => prefix_registry == registry,
                exact_or_glob => exact_or_glob.matches(registry, ""),
            })
    }
}

/// What is wrong with one whitelist entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryFault {
    /// The address part is not a valid address.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// A `*` shares its label with other characters, as in `a*.io`.
    #[error(
        "\"*\" must stand for a whole DNS label: replace {label:?} with \"*\" or spell it out"
    )]
    PartialWildcard {
        /// The offending label.
        label: String,
    },
    /// A `*` stands in the port.
    #[error("\"*\" cannot stand for a port: write the port number or remove it")]
    WildcardPort,
    /// A `*` inside a bracketed IPv6 address.
    #[error("\"*\" can only stand for DNS labels, not part of an IPv6 address: write the address in full")]
    WildcardIpv6,
    /// A glob followed by a repository path, as in `*.io/x/`.
    #[error("a glob cannot be used as a repository prefix: remove the path or the \"*\"")]
    GlobPrefix,
    /// A repository prefix without its closing `/`.
    #[error("a repository prefix must end with \"/\": write {suggestion:?}")]
    MissingTrailingSlash {
        /// The entry with `/` added.
        suggestion: String,
    },
    /// Two `/` in a row in the repository path.
    #[error("repository path must not contain an empty component: remove the extra \"/\"")]
    EmptyPathComponent,
    /// A path component with characters outside `[a-z0-9._-]`.
    #[error(
        "repository path component {component:?} may contain only lowercase letters, digits, \
         \".\", \"_\" and \"-\""
    )]
    InvalidPathComponent {
        /// The offending component.
        component: String,
    },
    /// A `*` in the repository path, as in `quay.io/myorg/*`.
    #[error(
        "\"*\" is not allowed in a repository path: a prefix ending in \"/\" already allows \
         everything beneath it"
    )]
    PathWildcard,
    /// A `.` or `..` path component.
    #[error("repository path component {component:?} is not allowed: remove it")]
    DotPathComponent {
        /// The offending component.
        component: String,
    },
}

/// Why a whitelist was rejected; messages name the entry's position (counting from 1) and text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhitelistError {
    /// An entry was empty or only whitespace.
    #[error("{} is empty: remove it", at(.position))]
    Empty {
        /// The entry's position counting from 1, when parsed as part of a list.
        position: Option<usize>,
    },
    /// An entry could not be parsed.
    #[error("{} ({entry:?}): {fault}", at(.position))]
    Invalid {
        /// The entry's position counting from 1, when parsed as part of a list.
        position: Option<usize>,
        /// The trimmed entry text, with any password redacted.
        entry: String,
        /// What is wrong with it.
        fault: EntryFault,
    },
}

impl WhitelistError {
    /// Returns the entry's position counting from 1, if known.
    pub fn position(&self) -> Option<usize> {
        match self {
            WhitelistError::Empty { position } | WhitelistError::Invalid { position, .. } => {
                *position
            }
        }
    }

    fn at_position(mut self, new: usize) -> Self {
        match &mut self {
            WhitelistError::Empty { position } | WhitelistError::Invalid { position, .. } => {
                *position = Some(new);
            }
        }
        self
    }
}

fn at(position: &Option<usize>) -> String {
    match position {
        Some(position) => format!("whitelist entry {position}"),
        None => "whitelist entry".to_string(),
    }
}

fn parse_entry(text: &str) -> Result<WhitelistEntry, EntryFault> {
    // Address::parse reports schemes, user info and bad characters before paths and wildcards,
    // so only those two faults are left for the whitelist to interpret.
    match Address::parse(text) {
        Ok(address) => Ok(WhitelistEntry::Exact(address)),
        Err(AddressError::Path { .. }) => parse_prefix(text),
        Err(AddressError::Wildcard) => parse_glob(text),
        Err(other) => Err(other.into()),
    }
}

fn parse_prefix(text: &str) -> Result<WhitelistEntry, EntryFault> {
    let (address, path) = text.split_once('/').unwrap_or((text, ""));
    if address.contains('*') {
        return Err(EntryFault::GlobPrefix);
    }
    let registry = Address::parse(address)?;
    if path.is_empty() {
        return Ok(WhitelistEntry::Exact(registry));
    }
    let (body, closed) = match path.strip_suffix('/') {
        Some(body) => (body, true),
        None => (path, false),
    };
    body.split('/').try_for_each(check_path_component)?;
    if !closed {
        return Err(EntryFault::MissingTrailingSlash {
            suggestion: format!("{registry}/{body}/"),
        });
    }
    Ok(WhitelistEntry::Prefix {
        registry,
        path: body.to_string(),
    })
}

fn check_path_component(component: &str) -> Result<(), EntryFault> {
    if component.is_empty() {
        return Err(EntryFault::EmptyPathComponent);
    }
    if component.contains('*') {
        return Err(EntryFault::PathWildcard);
    }
    if component == "." || component == ".." {
        return Err(EntryFault::DotPathComponent {
            component: component.to_string(),
        });
    }
    if !component.bytes().all(is_path_byte) {
        return Err(EntryFault::InvalidPathComponent {
            component: component.to_string(),
        });
    }
    Ok(())
}

fn is_path_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
}

fn parse_glob(text: &str) -> Result<WhitelistEntry, EntryFault> {
    let text = text.to_ascii_lowercase();
    if text.starts_with('[') {
        return Err(EntryFault::WildcardIpv6);
    }
    let (host, port) = match text.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text.as_str(), None),
    };
    if host.is_empty() {
        return Err(AddressError::MissingHost {
            port: port.unwrap_or_default().to_string(),
        }
        .into());
    }
    if let Some(label) = host
        .split('.')
        .find(|label| *label != "*" && label.contains('*'))
    {
        return Err(EntryFault::PartialWildcard {
            label: label.to_string(),
        });
    }
    // A one-letter stand-in keeps the length and leaves every error about the real labels.
    let probe: Vec<&str> = host
        .split('.')
        .map(|label| if label == "*" { "x" } else { label })
        .collect();
    validate_dns_name(&probe.join("."))?;
    let port = match port {
        None => None,
        Some(port) if port.contains('*') => return Err(EntryFault::WildcardPort),
        Some(port) if port.contains(':') => return Err(AddressError::TooManyColons.into()),
        Some(port) => Some(parse_port(port)?),
    };
    Ok(WhitelistEntry::Glob {
        labels: host.split('.').map(str::to_string).collect(),
        port,
    })
}

fn glob_matches(labels: &[String], host: &str) -> bool {
    // A `*` stands for a DNS label; an IPv6 host has no labels to stand for.
    if host.starts_with('[') {
        return false;
    }
    let mut host_labels = host.split('.');
    let all_equal = labels.iter().all(|pattern| {
        host_labels
            .next()
            .is_some_and(|label| pattern == "*" || pattern == label)
    });
    all_equal && host_labels.next().is_none()
}

/// Returns whether `repository` lies strictly under `path`, on `/` boundaries.
fn is_under(repository: &str, path: &str) -> bool {
    // A malformed repository (empty, `.` or `..` components) could climb out of the prefix
    // once a registry normalizes it, so it never matches.
    let well_formed = repository
        .split('/')
        .all(|component| check_path_component(component).is_ok());
    well_formed
        && repository
            .strip_prefix(path)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| !rest.is_empty())
}

#[cfg(test)]
#[path = "whitelist_tests.rs"]
mod tests;
