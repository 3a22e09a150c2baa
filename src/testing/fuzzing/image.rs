//! Image references.

use crate::domain::image::{
    ImageError, ImageRef, DEFAULT_DOMAIN, MAX_INPUT_LEN, NAME_TOTAL_LENGTH_MAX, TAG_LENGTH_MAX,
};

/// Image references: a reference that parses prints a form that parses back
/// to the same reference, within Docker's limits, and moves to another valid
/// registry unless the longer name breaks the length limit.
pub fn image(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reference) = ImageRef::parse(input) else {
        return;
    };
    assert!(input.len() <= MAX_INPUT_LEN, "{input:?} is over the limit");
    assert!(
        input.bytes().all(|b| b.is_ascii_graphic()),
        "{input:?} has a character no reference may contain"
    );

    let shown = reference.to_string();
    let again = ImageRef::parse(&shown)
        .unwrap_or_else(|e| panic!("{input:?} parsed, its display form {shown:?} did not: {e}"));
    assert_eq!(again.to_string(), shown, "display form of {input:?}");
    assert_eq!(
        (again.domain(), again.path(), again.tag(), again.digest()),
        (
            reference.domain(),
            reference.path(),
            reference.tag(),
            reference.digest()
        ),
        "{input:?} and its display form {shown:?} differ"
    );
    assert!(again.domain_explicit(), "{shown:?} names its registry");
    if reference.domain_explicit() {
        assert_eq!(again, reference, "{input:?} names its registry");
    } else {
        assert_eq!(reference.domain(), DEFAULT_DOMAIN, "{input:?}");
    }

    assert!(!reference.domain().is_empty(), "{input:?} has no domain");
    assert!(
        reference.name().len() <= NAME_TOTAL_LENGTH_MAX,
        "{input:?}: name {} is too long",
        reference.name()
    );
    let path = reference.path();
    assert!(
        path.split('/').all(|c| !c.is_empty()) && !path.bytes().any(|b| b.is_ascii_uppercase()),
        "{input:?}: path {path:?}"
    );
    if reference.domain() == DEFAULT_DOMAIN {
        assert!(path.contains('/'), "{input:?}: hub path {path:?}");
    }
    assert!(
        reference.tag().is_some() || reference.digest().is_some(),
        "{input:?} has neither tag nor digest"
    );
    if let Some(tag) = reference.tag() {
        assert!(
            !tag.is_empty() && tag.len() <= TAG_LENGTH_MAX,
            "{input:?}: tag {tag:?}"
        );
    }
    if let Some(digest) = reference.digest() {
        let (algorithm, hex) = digest.split_once(':').unwrap_or_default();
        let expected = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            other => panic!("{input:?}: digest algorithm {other:?}"),
        };
        assert!(
            hex.len() == expected && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{input:?}: digest {digest:?}"
        );
    }

    for domain in [
        "reg.example.com:5000",
        "localhost",
        "[::1]:5000",
        "docker.io",
        "index.docker.io",
    ] {
        match reference.with_domain(domain) {
            Ok(moved) => {
                assert!(moved.domain_explicit(), "{input:?} moved to {domain}");
                assert_eq!(
                    (moved.tag(), moved.digest()),
                    (reference.tag(), reference.digest()),
                    "{input:?} moved to {domain}"
                );
                if domain.ends_with("docker.io") {
                    assert_eq!(
                        moved.domain(),
                        DEFAULT_DOMAIN,
                        "{input:?} moved to {domain}"
                    );
                    if reference.domain() == DEFAULT_DOMAIN {
                        // Moving to the registry the input implied or named changes nothing.
                        assert_eq!(moved.to_string(), shown, "{input:?} moved to {domain}");
                    }
                } else {
                    assert_eq!(moved.domain(), domain, "{input:?} moved to {domain}");
                }
            }
            Err(ImageError::NameTooLong { .. }) => {}
            Err(e) => panic!("{input:?} cannot move to the valid domain {domain}: {e}"),
        }
    }
}
