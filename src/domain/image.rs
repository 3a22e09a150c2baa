//! Docker image references (rule R17): parsing and normalization exactly as `docker pull` does it
//! (distribution/reference v0.6 `ParseNormalizedNamed` followed by `TagNameOnly`), so that the
//! registry domain registrar hands a credential for is the one Docker will actually contact.
//! About 650 lines: one grammar, kept whole so it reads against the reference.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;

/// Longest input, in bytes, that [`ImageRef::parse`] looks at; anything longer is refused unread.
pub const MAX_INPUT_LEN: usize = 1024;

/// Longest full name (`domain/path`, e.g. `docker.io/library/ubuntu`) Docker accepts.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Longest tag Docker accepts.
pub const TAG_LENGTH_MAX: usize = 128;

/// The domain Docker uses when a reference names no registry.
pub const DEFAULT_DOMAIN: &str = "docker.io";

/// The tag Docker pulls when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const LOCALHOST: &str = "localhost";

// The building blocks below are transcribed from distribution/reference regexp.go so that a
// reviewer can diff them against upstream. Go's `\w` is ASCII-only while Rust's is Unicode,
// hence the explicit classes.
const ALPHANUMERIC: &str = "[a-z0-9]+";
const SEPARATOR: &str = "(?:[._]|__|[-]+)";
const DOMAIN_NAME_COMPONENT: &str = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const OPTIONAL_PORT: &str = "(?::[0-9]+)?";
const TAG: &str = "[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}";
const DIGEST: &str = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[[:xdigit:]]{32,}";
const IPV6_ADDRESS: &str = r"\[(?:[a-fA-F0-9:]+)\]";

fn domain_and_port() -> String {
    let component = DOMAIN_NAME_COMPONENT;
    format!(r"(?:{component}(?:\.{component})*|{IPV6_ADDRESS}){OPTIONAL_PORT}")
}

fn remote_name() -> String {
    let path_component = format!("{ALPHANUMERIC}(?:{SEPARATOR}{ALPHANUMERIC})*");
    format!("{path_component}(?:/{path_component})*")
}

/// Upstream `ReferenceRegexp`: captures name, tag and digest.
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = format!(
        "^((?:{}/)?{})(?::({TAG}))?(?:@({DIGEST}))?$",
        domain_and_port(),
        remote_name()
    );
    Regex::new(&pattern).expect("the reference pattern is transcribed from regexp.go and is valid")
});

/// Upstream `anchoredNameRegexp`: captures domain and path of a name (the
/// tests' judge of [`name_parts`]).
#[cfg(test)]
static ANCHORED_NAME: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = format!("^(?:({})/)?({})$", domain_and_port(), remote_name());
    Regex::new(&pattern).expect("the name pattern is transcribed from regexp.go and is valid")
});

/// Upstream `anchoredDomainRegexp` (`domainAndPort`, anchored): whether the
/// first component of a name is its domain.
static ANCHORED_DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!("^{}$", domain_and_port()))
        .expect("the domain pattern is transcribed from regexp.go and is valid")
});

/// Upstream `anchoredDigestRegexp`.
static ANCHORED_DIGEST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!("^{DIGEST}$"))
        .expect("the digest pattern is transcribed from regexp.go and is valid")
});

/// A normalized Docker image reference: registry domain, repository path, tag and digest.
///
/// Equality and hashing also take into account whether the domain was implied, and the path as
/// written in that case, because [`ImageRef::with_domain`] treats `ubuntu` and
/// `docker.io/library/ubuntu` differently: the first may be moved to a default registry as
/// `reg/ubuntu`, the second names Docker Hub explicitly. Compare the `Display` forms
/// to ask whether two references make Docker pull the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
    /// The path as written when no registry was named (`ubuntu`, not `library/ubuntu`); `None`
    /// when the input named its registry.
    implied_path: Option<String>,
}

impl ImageRef {
    /// Parses and normalizes like docker pull does.
    ///
    /// The accepted set is exactly distribution/reference v0.6 `ParseNormalizedNamed`, with two
    /// deliberate strictnesses, both for references Docker cannot pull from a well-defined
    /// registry:
    /// - a port outside `1..=65535` is rejected (Docker's grammar takes any digits);
    /// - a first component that Docker's splitting rule takes for a registry (it contains `.`)
    ///   but that is no valid host, such as `my_reg.local/x`, is rejected; upstream turns it into
    ///   a reference with an empty domain instead.
    ///
    /// Leading zeros in a port are kept as written (`reg:05000`), as Docker does.
    pub fn parse(input: &str) -> Result<Self, ImageError> {
        // Checked before anything else so hostile input costs O(1), not a regex run.
        if input.len() > MAX_INPUT_LEN {
            return Err(ImageError::TooLong { len: input.len() });
        }
        if input.is_empty() {
            return Err(ImageError::Empty);
        }
        check_characters(input)?;
        if is_identifier(input) {
            return Err(ImageError::HexName);
        }

        let split = split_docker_domain(input);
        // Upstream checks everything before the first ':' of the remainder; stopping at '@' as
        // well only changes the message for an uppercase digest algorithm, which
        // `validate_digest` rejects anyway.
        let remote = split.remainder.split([':', '@']).next().unwrap_or_default();
        if remote.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ImageError::Uppercase {
                name: remote.to_owned(),
            });
        }

        let full = format!("{}/{}", split.domain, split.remainder);
        if !REFERENCE.is_match(&full) {
            return Err(diagnose(input, &full));
        }
        let (name, tag, digest) = reference_parts(&full);

        // v0.6 measures the whole name including the domain; later upstream releases measure
        // only the path, which would let longer names through.
        if name.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ImageError::NameTooLong { len: name.len() });
        }
        let (domain, path) = name_parts(name);
        if domain.is_empty() {
            return Err(ImageError::InvalidDomain {
                domain: split.domain.to_owned(),
            });
        }
        if let Some(digest) = digest {
            validate_digest(digest)?;
        }
        check_port(domain)?;

        let implied_path = if split.explicit {
            None
        } else if split.library_added {
            Some(
                path.strip_prefix(OFFICIAL_REPO_PREFIX)
                    .unwrap_or(path)
                    .to_owned(),
            )
        } else {
            Some(path.to_owned())
        };
        let tag = match (tag, digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (tag, _) => tag.map(str::to_owned),
        };
        Ok(Self {
            domain: domain.to_owned(),
            path: path.to_owned(),
            tag,
            digest: digest.map(str::to_owned),
            implied_path,
        })
    }

    /// Returns the registry domain exactly as Docker keeps it, e.g. `docker.io` or `Foo:5000`.
    ///
    /// Docker does not lower-case domains, so `Reg.io` and `reg.io` are different strings here
    /// even though they resolve to the same host; compare accordingly.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Returns whether the input named its registry; false when `docker.io` was implied.
    pub fn domain_explicit(&self) -> bool {
        self.implied_path.is_none()
    }

    /// Returns the normalized repository path, e.g. `library/ubuntu`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Returns the fully qualified name without tag or digest, e.g. `docker.io/library/ubuntu`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// Returns the tag, which is `latest` when the input named neither a tag nor a digest.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// Returns the digest, e.g. `sha256:…`, when the input named one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// Returns the same reference on another domain; used to apply a default registry to a reference whose domain was implied.
    ///
    /// Re-applies `library/` only for `docker.io`: with a default registry `reg:5000`,
    /// `ubuntu:14.04` becomes `reg:5000/ubuntu:14.04`, because the path is taken as the user
    /// wrote it when the domain was implied. When the input named its registry the normalized
    /// path is used, so `docker.io/ubuntu` becomes `reg:5000/library/ubuntu`, the same as
    /// `docker.io/library/ubuntu` does. `index.docker.io` is normalized to `docker.io`.
    ///
    /// The result is re-parsed as a whole, so every limit of [`ImageRef::parse`] applies; a
    /// domain that Docker would not read as a registry (`reg` without `.` or port) is refused.
    pub fn with_domain(&self, domain: &str) -> Result<Self, ImageError> {
        if domain.is_empty() || domain.contains('/') {
            return Err(ImageError::InvalidDomain {
                domain: domain.to_owned(),
            });
        }
        let path = self.implied_path.as_deref().unwrap_or(&self.path);
        let mut reference = format!("{domain}/{path}");
        if let Some(tag) = &self.tag {
            reference.push(':');
            reference.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            reference.push('@');
            reference.push_str(digest);
        }
        let moved = Self::parse(&reference)?;
        let expected = if domain == LEGACY_DEFAULT_DOMAIN {
            DEFAULT_DOMAIN
        } else {
            domain
        };
        // Guards against a domain argument that Docker's splitting rule would read as part of
        // the path, which would silently send the reference to Docker Hub instead.
        if !moved.domain_explicit() || moved.domain != expected {
            return Err(ImageError::InvalidDomain {
                domain: domain.to_owned(),
            });
        }
        Ok(moved)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why an image reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The input was empty.
    #[error("invalid reference format: reference is empty")]
    Empty,
    /// The input was longer than [`MAX_INPUT_LEN`] bytes and was not parsed.
    #[error("invalid reference format: reference is {len} bytes long, at most 1024 are allowed")]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
    },
    /// The input contained a character no reference may contain.
    #[error("invalid reference format: {fault} {character:?} at byte {offset}")]
    InvalidCharacter {
        /// The offending character.
        character: char,
        /// Byte offset of the character in the input.
        offset: usize,
        /// What is wrong with the character.
        fault: CharacterFault,
    },
    /// The input does not follow the reference grammar.
    #[error("invalid reference format")]
    InvalidFormat,
    /// The input starts with a URL scheme such as `https://`.
    #[error("invalid reference format: a url scheme (such as https://) is not allowed")]
    SchemeNotAllowed,
    /// The input carries user info (`user:password@registry/...`).
    #[error("invalid reference format: user info (credentials before '@') is not allowed")]
    UserInfoNotAllowed,
    /// The input contains more than one `@`.
    #[error("invalid reference format: more than one '@'")]
    MultipleAt,
    /// The repository name contains an uppercase letter.
    #[error("invalid reference format: repository name ({name}) must be lowercase")]
    Uppercase {
        /// The repository name as found in the input.
        name: String,
    },
    /// The input is a 64-character hexadecimal image id, not a name.
    #[error("invalid repository name, cannot specify 64-byte hexadecimal strings")]
    HexName,
    /// The full name (`domain/path`) is longer than [`NAME_TOTAL_LENGTH_MAX`].
    #[error("repository name must not be more than 255 characters (got {len})")]
    NameTooLong {
        /// Length of the full name.
        len: usize,
    },
    /// The tag is longer than [`TAG_LENGTH_MAX`].
    #[error("invalid reference format: tag must not be more than 128 characters (got {len})")]
    TagTooLong {
        /// Length of the tag.
        len: usize,
    },
    /// The digest is malformed or uses an algorithm registrar does not accept.
    #[error("invalid digest: {reason}")]
    InvalidDigest {
        /// What is wrong with the digest.
        reason: DigestFault,
    },
    /// The registry port is outside `1..=65535`.
    #[error("invalid reference format: port {port} is outside 1..=65535")]
    InvalidPort {
        /// The port as written.
        port: String,
    },
    /// The registry part is not a host Docker could contact.
    #[error("invalid reference format: {domain:?} is not a valid registry domain")]
    InvalidDomain {
        /// The registry part as written.
        domain: String,
    },
}

/// What is wrong with a character found in a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharacterFault {
    /// A control character such as NUL or DEL.
    Control,
    /// An ASCII whitespace character.
    Whitespace,
    /// A character outside ASCII, such as a fullwidth look-alike.
    NonAscii,
}

impl fmt::Display for CharacterFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Control => "control character",
            Self::Whitespace => "whitespace",
            Self::NonAscii => "non-ascii character",
        })
    }
}

/// What is wrong with a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestFault {
    /// Nothing follows the `@`.
    Empty,
    /// There is no `:` between algorithm and hex.
    MissingSeparator,
    /// Nothing precedes the `:`.
    MissingAlgorithm,
    /// Nothing follows the `:`.
    MissingHex,
    /// The algorithm is not `sha256`, `sha384` or `sha512`.
    UnsupportedAlgorithm {
        /// The algorithm as written.
        algorithm: String,
    },
    /// The hex part contains a character that is not a hexadecimal digit.
    NotHex,
    /// The hex part contains an uppercase letter.
    UppercaseHex,
    /// The hex part does not have the length the algorithm produces.
    WrongLength {
        /// The algorithm.
        algorithm: &'static str,
        /// The hex length the algorithm produces.
        expected: usize,
        /// The hex length found.
        actual: usize,
    },
}

impl fmt::Display for DigestFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("digest is empty"),
            Self::MissingSeparator => f.write_str("no ':' between algorithm and hex"),
            Self::MissingAlgorithm => f.write_str("no algorithm before ':'"),
            Self::MissingHex => f.write_str("no hex after ':'"),
            Self::UnsupportedAlgorithm { algorithm } => write!(
                f,
                "unsupported digest algorithm {algorithm:?}, only sha256, sha384 and sha512 are accepted"
            ),
            Self::NotHex => f.write_str("hex part contains a non-hexadecimal character"),
            Self::UppercaseHex => f.write_str("hex part must be lowercase"),
            Self::WrongLength {
                algorithm,
                expected,
                actual,
            } => write!(
                f,
                "{algorithm} digest must have {expected} hex characters, got {actual}"
            ),
        }
    }
}

/// Result of upstream `splitDockerDomain`, plus what registrar needs to undo the `library/`.
struct Split<'a> {
    domain: &'a str,
    remainder: String,
    explicit: bool,
    library_added: bool,
}

/// Mirrors normalize.go `splitDockerDomain`; the decision which registry gets a credential is
/// made here.
fn split_docker_domain(input: &str) -> Split<'_> {
    let (domain, remainder, explicit) = match input.split_once('/') {
        Some((first, rest))
            if first == LOCALHOST
                || first == LEGACY_DEFAULT_DOMAIN
                || first.contains(['.', ':'])
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            let domain = if first == LEGACY_DEFAULT_DOMAIN {
                DEFAULT_DOMAIN
            } else {
                first
            };
            (domain, rest, true)
        }
        _ => (DEFAULT_DOMAIN, input, false),
    };
    let library_added = domain == DEFAULT_DOMAIN && !remainder.contains('/');
    let remainder = if library_added {
        format!("{OFFICIAL_REPO_PREFIX}{remainder}")
    } else {
        remainder.to_owned()
    };
    Split {
        domain,
        remainder,
        explicit,
        library_added,
    }
}

/// Upstream `anchoredIdentifierRegexp`: a bare image id.
fn is_identifier(input: &str) -> bool {
    input.len() == 64
        && input
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Refuses characters the grammar can never accept, to name the fault instead of only saying
/// "invalid reference format".
fn check_characters(input: &str) -> Result<(), ImageError> {
    for (offset, character) in input.char_indices() {
        let fault = if !character.is_ascii() {
            CharacterFault::NonAscii
        } else if character.is_ascii_whitespace() {
            CharacterFault::Whitespace
        } else if character.is_ascii_control() {
            CharacterFault::Control
        } else {
            continue;
        };
        return Err(ImageError::InvalidCharacter {
            character,
            offset,
            fault,
        });
    }
    Ok(())
}

/// Mirrors go-digest `Digest.Validate` with only the algorithms Docker registers.
fn validate_digest(digest: &str) -> Result<(), ImageError> {
    let fault = |reason| Err(ImageError::InvalidDigest { reason });
    if digest.is_empty() {
        return fault(DigestFault::Empty);
    }
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return fault(DigestFault::MissingSeparator);
    };
    if algorithm.is_empty() {
        return fault(DigestFault::MissingAlgorithm);
    }
    if hex.is_empty() {
        return fault(DigestFault::MissingHex);
    }
    let (algorithm, expected) = match algorithm {
        "sha256" => ("sha256", 64),
        "sha384" => ("sha384", 96),
        "sha512" => ("sha512", 128),
        other => {
            return fault(DigestFault::UnsupportedAlgorithm {
                algorithm: other.to_owned(),
            })
        }
    };
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return fault(DigestFault::NotHex);
    }
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return fault(DigestFault::UppercaseHex);
    }
    if hex.len() != expected {
        return fault(DigestFault::WrongLength {
            algorithm,
            expected,
            actual: hex.len(),
        });
    }
    Ok(())
}

/// Registrar's one strictness beyond Docker's grammar, which takes any run of digits as a port:
/// a port that no socket can have names no registry a credential could be meant for.
fn check_port(domain: &str) -> Result<(), ImageError> {
    let host_end = domain.rfind(']').map_or(0, |i| i + 1);
    let Some((_, port)) = domain[host_end..].split_once(':') else {
        return Ok(());
    };
    match port.trim_start_matches('0').parse::<u16>() {
        Ok(value) if value >= 1 => Ok(()),
        _ => Err(ImageError::InvalidPort {
            port: port.to_owned(),
        }),
    }
}

/// Explains a grammar failure. Only called once the input is known to be invalid, so it may
/// guess at the most helpful message without affecting what is accepted.
fn diagnose(input: &str, full: &str) -> ImageError {
    if input.contains("://") {
        return ImageError::SchemeNotAllowed;
    }
    if input.matches('@').count() > 1 {
        return ImageError::MultipleAt;
    }
    let (before_at, after_at) = match input.split_once('@') {
        Some((before, after)) => (before, Some(after)),
        None => (input, None),
    };
    if let Some(rest) = after_at {
        // A digest never contains '/', so an '@' before the path is user info.
        let path_follows = rest.contains('/');
        if path_follows && !before_at.contains(['/', '[']) {
            return ImageError::UserInfoNotAllowed;
        }
        if !path_follows && !ANCHORED_DIGEST.is_match(rest) {
            if let Err(error) = validate_digest(rest) {
                return error;
            }
        }
    }
    let last_component = before_at.rsplit('/').next().unwrap_or_default();
    if let Some((_, tag)) = last_component.split_once(':') {
        let tag_like = tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if tag.len() > TAG_LENGTH_MAX && tag_like {
            return ImageError::TagTooLong { len: tag.len() };
        }
    }
    // Upstream's own hint: if lower-casing makes it valid, the fault is an uppercase name.
    let lower = full.to_ascii_lowercase();
    if lower != full && REFERENCE.is_match(&lower) {
        let name = match last_component.split_once(':') {
            Some((_, tag)) => &before_at[..before_at.len() - tag.len() - 1],
            None => before_at,
        };
        return ImageError::Uppercase {
            name: name.to_owned(),
        };
    }
    ImageError::InvalidFormat
}

/// Splits a reference that matches [`REFERENCE`] into its name, tag and
/// digest, as the pattern's groups capture them, without a capturing run
/// (the hot path of ResolvePull). A name, a tag and a digest hold no `@`,
/// so the first `@` starts the digest; a tag holds no `/` or `:`, and a
/// name's only `:` (a port, an IPv6 address) come before its last `/`, so
/// a `:` after the last `/` starts the tag.
fn reference_parts(full: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match full.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (full, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].find(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (&rest[..at], Some(&rest[at + 1..]), digest)
        }
        None => (rest, None, digest),
    }
}

/// Splits a name that matches upstream's `anchoredNameRegexp` into domain
/// and path, as its groups capture them: the optional domain group takes
/// the first component when that is a domain (it ends at the first `/`,
/// and the rest of a valid name is always a path), else the domain is
/// empty and the whole name is the path.
fn name_parts(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest)) if ANCHORED_DOMAIN.is_match(first) => (first, rest),
        _ => ("", name),
    }
}

#[cfg(test)]
#[path = "image_tests.rs"]
mod tests;
