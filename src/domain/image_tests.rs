//! Tests of `image.rs`: distribution/reference's own cases restated as a
//! table, with property tests; long because the table is.

use super::*;
use proptest::prelude::*;

const SHA256: &str = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582";

fn hex(len: usize) -> String {
    "0123456789abcdef".chars().cycle().take(len).collect()
}

fn digest_of(algorithm: &str, len: usize) -> String {
    format!("{algorithm}:{}", hex(len))
}

/// Expected parse result: domain, path, tag, digest, domain explicit.
struct Valid {
    input: String,
    domain: &'static str,
    path: String,
    tag: Option<&'static str>,
    digest: Option<String>,
    explicit: bool,
}

fn valid(
    input: impl Into<String>,
    domain: &'static str,
    path: impl Into<String>,
    tag: Option<&'static str>,
    explicit: bool,
) -> Valid {
    Valid {
        input: input.into(),
        domain,
        path: path.into(),
        tag,
        digest: None,
        explicit,
    }
}

fn with_digest(mut case: Valid, digest: String) -> Valid {
    case.digest = Some(digest);
    case
}

fn assert_valid(case: &Valid) {
    let parsed = ImageRef::parse(&case.input)
        .unwrap_or_else(|e| panic!("{:?} should parse, got {e}", case.input));
    assert_eq!(parsed.domain(), case.domain, "domain of {:?}", case.input);
    assert_eq!(parsed.path(), case.path, "path of {:?}", case.input);
    assert_eq!(parsed.tag(), case.tag, "tag of {:?}", case.input);
    assert_eq!(
        parsed.digest(),
        case.digest.as_deref(),
        "digest of {:?}",
        case.input
    );
    assert_eq!(
        parsed.domain_explicit(),
        case.explicit,
        "domain_explicit of {:?}",
        case.input
    );
}

#[test]
fn familiar_and_hub_names_normalize_like_docker() {
    // Given names that Docker resolves on Docker Hub
    let latest = Some("latest");
    let cases = [
        valid("ubuntu", "docker.io", "library/ubuntu", latest, false),
        valid(
            "ubuntu:14.04",
            "docker.io",
            "library/ubuntu",
            Some("14.04"),
            false,
        ),
        valid(
            "library/debian",
            "docker.io",
            "library/debian",
            latest,
            false,
        ),
        valid("docker/docker", "docker.io", "docker/docker", latest, false),
        valid("fooo/bar", "docker.io", "fooo/bar", latest, false),
        valid("other/library", "docker.io", "other/library", latest, false),
        valid("store/foo/bar", "docker.io", "store/foo/bar", latest, false),
        valid(
            "library/foo/bar",
            "docker.io",
            "library/foo/bar",
            latest,
            false,
        ),
        valid(
            "ubuntu-12.04-base",
            "docker.io",
            "library/ubuntu-12.04-base",
            latest,
            false,
        ),
        valid(
            "docker.io/ubuntu",
            "docker.io",
            "library/ubuntu",
            latest,
            true,
        ),
        valid(
            "docker.io/library/ubuntu",
            "docker.io",
            "library/ubuntu",
            latest,
            true,
        ),
        valid("docker.io/foo/bar", "docker.io", "foo/bar", latest, true),
        valid(
            "docker.io/library/foo/bar",
            "docker.io",
            "library/foo/bar",
            latest,
            true,
        ),
        valid(
            "index.docker.io/ubuntu",
            "docker.io",
            "library/ubuntu",
            latest,
            true,
        ),
        valid(
            "index.docker.io/docker/docker",
            "docker.io",
            "docker/docker",
            latest,
            true,
        ),
        valid(
            "index.docker.io/fooo/bar",
            "docker.io",
            "fooo/bar",
            latest,
            true,
        ),
        // A first component without '.', ':' or uppercase is a namespace, not a registry.
        valid("test_com/foo", "docker.io", "test_com/foo", latest, false),
        valid(
            "docker/migrator",
            "docker.io",
            "docker/migrator",
            latest,
            false,
        ),
        // Without a '/', a dotted name or an IP is still a Hub repository and ':' a tag.
        valid(
            "test.com:tag",
            "docker.io",
            "library/test.com",
            Some("tag"),
            false,
        ),
        valid(
            "test.com:5000",
            "docker.io",
            "library/test.com",
            Some("5000"),
            false,
        ),
        valid(
            "foo_bar.com:8080",
            "docker.io",
            "library/foo_bar.com",
            Some("8080"),
            false,
        ),
        valid(
            "foo/foo_bar.com:8080",
            "docker.io",
            "foo/foo_bar.com",
            Some("8080"),
            false,
        ),
        valid(
            "192.168.0.1",
            "docker.io",
            "library/192.168.0.1",
            latest,
            false,
        ),
        valid(
            "192.168.0.1:80",
            "docker.io",
            "library/192.168.0.1",
            Some("80"),
            false,
        ),
        valid(
            "lowercase:Uppercase",
            "docker.io",
            "library/lowercase",
            Some("Uppercase"),
            false,
        ),
        valid("d/docker", "docker.io", "d/docker", latest, false),
        valid("localhost", "docker.io", "library/localhost", latest, false),
        valid(
            "index.docker.io",
            "docker.io",
            "library/index.docker.io",
            latest,
            false,
        ),
        valid("jess/t", "docker.io", "jess/t", latest, false),
        valid(
            "docker-rules/docker",
            "docker.io",
            "docker-rules/docker",
            latest,
            false,
        ),
        valid(
            "docker---rules/docker",
            "docker.io",
            "docker---rules/docker",
            latest,
            false,
        ),
        valid(
            "dock__er/docker",
            "docker.io",
            "dock__er/docker",
            latest,
            false,
        ),
        valid("a_b-c__d/e.f", "docker.io", "a_b-c__d/e.f", latest, false),
    ];
    // When parsed / Then they land where Docker puts them
    for case in &cases {
        assert_valid(case);
    }
}

#[test]
fn registry_domains_are_recognized_and_kept_as_written() {
    // Given names whose first component is a registry
    let latest = Some("latest");
    let cases = [
        valid("Foo/bar", "Foo", "bar", latest, true),
        valid("FOO/bar", "FOO", "bar", latest, true),
        valid("Docker/docker", "Docker", "docker", latest, true),
        valid("DOCKER/docker", "DOCKER", "docker", latest, true),
        valid("DOCKER.IO/ubuntu", "DOCKER.IO", "ubuntu", latest, true),
        valid("localhost/x", "localhost", "x", latest, true),
        valid("localhost:5000/x", "localhost:5000", "x", latest, true),
        valid(
            "localhost:8000/privatebase",
            "localhost:8000",
            "privatebase",
            latest,
            true,
        ),
        valid("test.com/foo", "test.com", "foo", latest, true),
        valid("test.com:8080/foo", "test.com:8080", "foo", latest, true),
        valid("test-com:8080/foo", "test-com:8080", "foo", latest, true),
        valid("test:5000/repo:tag", "test:5000", "repo", Some("tag"), true),
        valid("xn--n3h.com/foo", "xn--n3h.com", "foo", latest, true),
        valid(
            "xn--n3h.com:18080/foo",
            "xn--n3h.com:18080",
            "foo",
            latest,
            true,
        ),
        valid(
            "xn--n3h.com/myimage:xn--n3h.com",
            "xn--n3h.com",
            "myimage",
            Some("xn--n3h.com"),
            true,
        ),
        valid(
            "example.com/private/moonbase",
            "example.com",
            "private/moonbase",
            latest,
            true,
        ),
        valid(
            "example.com:8000/privatebase",
            "example.com:8000",
            "privatebase",
            latest,
            true,
        ),
        valid(
            "127.0.0.1:5000/docker/docker",
            "127.0.0.1:5000",
            "docker/docker",
            latest,
            true,
        ),
        valid(
            "127.0.0.1:5000/debian",
            "127.0.0.1:5000",
            "debian",
            latest,
            true,
        ),
        valid(
            "192.168.0.1:8/debian",
            "192.168.0.1:8",
            "debian",
            latest,
            true,
        ),
        valid("192.168.1.1/repo", "192.168.1.1", "repo", latest, true),
        valid(
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            Some("some-long-tag"),
            true,
        ),
        valid(
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "b.gcr.io",
            "test.example.com/my-app",
            Some("test.example.com"),
            true,
        ),
        valid("[::1]:5000/x", "[::1]:5000", "x", latest, true),
        valid("[2001:db8::1]/repo", "[2001:db8::1]", "repo", latest, true),
        valid(
            "[2001:db8::]:5000/repo",
            "[2001:db8::]:5000",
            "repo",
            latest,
            true,
        ),
        valid(
            "[fc00::1]:5000/docker/docker",
            "[fc00::1]:5000",
            "docker/docker",
            latest,
            true,
        ),
        valid(
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
            "[fc00:1:2:3:4:5:6:7]:5000",
            "library/debian",
            latest,
            true,
        ),
        valid("reg:1/x", "reg:1", "x", latest, true),
        valid("[FE80::1]/x", "[FE80::1]", "x", latest, true),
        valid("LOCALHOST/x", "LOCALHOST", "x", latest, true),
        valid("reg:65535/x", "reg:65535", "x", latest, true),
        valid("reg:05000/x", "reg:05000", "x", latest, true),
    ];
    // When parsed / Then the domain is the first component, case preserved, no library/
    for case in &cases {
        assert_valid(case);
    }
}

#[test]
fn digests_of_each_accepted_algorithm_parse_with_or_without_a_tag() {
    // Given digests of every accepted algorithm, alone and after a tag
    let sha384 = digest_of("sha384", 96);
    let sha512 = digest_of("sha512", 128);
    let cases = [
        with_digest(
            valid(
                format!("ubuntu@{SHA256}"),
                "docker.io",
                "library/ubuntu",
                None,
                false,
            ),
            SHA256.to_owned(),
        ),
        with_digest(
            valid(
                format!("ubuntu:tag@{SHA256}"),
                "docker.io",
                "library/ubuntu",
                Some("tag"),
                false,
            ),
            SHA256.to_owned(),
        ),
        with_digest(
            valid(
                format!("reg:5000/a/b@{sha384}"),
                "reg:5000",
                "a/b",
                None,
                true,
            ),
            sha384.clone(),
        ),
        with_digest(
            valid(
                format!("xn--7o8h.com/myimage:xn--7o8h.com@{sha512}"),
                "xn--7o8h.com",
                "myimage",
                Some("xn--7o8h.com"),
                true,
            ),
            sha512.clone(),
        ),
        with_digest(
            valid(
                format!("[2001:db8::1]:5000/repo:tag@{SHA256}"),
                "[2001:db8::1]:5000",
                "repo",
                Some("tag"),
                true,
            ),
            SHA256.to_owned(),
        ),
    ];
    // When parsed / Then a digest without a tag keeps no tag, and both are kept together
    for case in &cases {
        assert_valid(case);
    }
}

#[test]
fn display_is_fully_qualified() {
    // Given references in familiar and full forms
    let cases = [
        (
            "ubuntu".to_owned(),
            "docker.io/library/ubuntu:latest".to_owned(),
        ),
        (
            "index.docker.io/ubuntu:14.04".to_owned(),
            "docker.io/library/ubuntu:14.04".to_owned(),
        ),
        (
            format!("reg:5000/a/b@{SHA256}"),
            format!("reg:5000/a/b@{SHA256}"),
        ),
        (
            format!("reg.io/a:t@{SHA256}"),
            format!("reg.io/a:t@{SHA256}"),
        ),
        (
            format!("busybox:latest@{SHA256}"),
            format!("docker.io/library/busybox:latest@{SHA256}"),
        ),
    ];
    for (input, expected) in &cases {
        // When parsed and formatted
        let formatted = ImageRef::parse(input).map(|r| r.to_string());
        // Then the canonical form is printed
        assert_eq!(formatted.as_deref(), Ok(expected.as_str()), "{input:?}");
    }
}

#[test]
fn sixty_four_hex_characters_are_an_image_id_but_neighbours_are_names() {
    // Given a 64-hex image id and names of 63 and 65 hex characters
    let id = hex(64);
    // When parsed / Then only the bare id is refused
    assert_eq!(ImageRef::parse(&id), Err(ImageError::HexName));
    for len in [63, 65] {
        let name = hex(len);
        let parsed = ImageRef::parse(&name).expect("a non-64 hex name is a plain repository name");
        assert_eq!(parsed.path(), format!("library/{name}"));
    }
    // And with a registry or a tag the same 64 characters are a repository, as upstream says
    let qualified = format!("docker.io/{id}");
    assert!(ImageRef::parse(&qualified).is_ok());
    assert!(ImageRef::parse(&format!("{id}:tag")).is_ok());
    assert!(
        ImageRef::parse("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev").is_ok()
    );
}

#[test]
fn full_name_length_is_limited_to_255_including_the_domain() {
    // Given names whose full form is exactly 255 and 256 characters
    let explicit_ok = format!("reg.io/{}", "a".repeat(255 - "reg.io/".len()));
    let explicit_long = format!("reg.io/{}", "a".repeat(256 - "reg.io/".len()));
    let hub_ok = "a".repeat(255 - "docker.io/library/".len());
    let hub_long = "a".repeat(256 - "docker.io/library/".len());
    // When parsed / Then 255 passes and 256 fails, the implied docker.io/library/ counting
    assert!(ImageRef::parse(&explicit_ok).is_ok());
    assert_eq!(
        ImageRef::parse(&explicit_long),
        Err(ImageError::NameTooLong { len: 256 })
    );
    assert!(ImageRef::parse(&hub_ok).is_ok());
    assert_eq!(
        ImageRef::parse(&hub_long),
        Err(ImageError::NameTooLong { len: 256 })
    );
    // And upstream's own boundary names, once normalized onto docker.io, are too long
    let many = format!("{}a:tag", "a/".repeat(128));
    assert!(matches!(
        ImageRef::parse(&many),
        Err(ImageError::NameTooLong { .. })
    ));
    let over = format!("{}a:tag-puts-this-over-max", "a/".repeat(127));
    assert_eq!(
        ImageRef::parse(&over),
        Err(ImageError::NameTooLong { len: 265 })
    );
    let namespace = format!("{}/docker", "this_is_not_a_valid_namespace".repeat(9));
    assert!(matches!(
        ImageRef::parse(&namespace),
        Err(ImageError::NameTooLong { .. })
    ));
}

#[test]
fn tag_length_is_limited_to_128() {
    // Given tags of 128 and 129 characters
    let ok = format!("ubuntu:{}", "t".repeat(128));
    let long = format!("ubuntu:{}", "t".repeat(129));
    // When parsed / Then the longer one is refused with its length
    assert_eq!(
        ImageRef::parse(&ok).map(|r| r.tag().map(str::len)),
        Ok(Some(128))
    );
    assert_eq!(
        ImageRef::parse(&long),
        Err(ImageError::TagTooLong { len: 129 })
    );
}

#[test]
fn input_length_is_checked_before_anything_else() {
    // Given inputs of 1024 and 1025 bytes and a 10 MB one
    let at_limit = "a".repeat(MAX_INPUT_LEN);
    let over = "a".repeat(MAX_INPUT_LEN + 1);
    let huge = "\0".repeat(10 * 1024 * 1024);
    // When parsed
    let start = std::time::Instant::now();
    let huge_result = ImageRef::parse(&huge);
    let elapsed = start.elapsed();
    // Then only the longer ones are refused as too long, without being read
    assert!(matches!(
        ImageRef::parse(&at_limit),
        Err(ImageError::NameTooLong { .. })
    ));
    assert_eq!(
        ImageRef::parse(&over),
        Err(ImageError::TooLong { len: 1025 })
    );
    assert_eq!(
        huge_result,
        Err(ImageError::TooLong {
            len: 10 * 1024 * 1024
        })
    );
    assert!(
        elapsed < std::time::Duration::from_millis(100),
        "took {elapsed:?}"
    );
}

#[test]
fn invalid_references_are_rejected_with_the_fault_named() {
    // Given inputs Docker refuses, with the error registrar reports
    let control = |offset| ImageError::InvalidCharacter {
        character: '\0',
        offset,
        fault: CharacterFault::Control,
    };
    let digest = |reason| ImageError::InvalidDigest { reason };
    let uppercase = |name: &str| ImageError::Uppercase {
        name: name.to_owned(),
    };
    let cases: Vec<(String, ImageError)> = vec![
        (String::new(), ImageError::Empty),
        ("ubuntu\0".into(), control(6)),
        ("\0".into(), control(0)),
        (
            "ubuntu latest".into(),
            ImageError::InvalidCharacter {
                character: ' ',
                offset: 6,
                fault: CharacterFault::Whitespace,
            },
        ),
        (
            "ubuntu\n".into(),
            ImageError::InvalidCharacter {
                character: '\n',
                offset: 6,
                fault: CharacterFault::Whitespace,
            },
        ),
        (
            "ubuntu\x7f".into(),
            ImageError::InvalidCharacter {
                character: '\x7f',
                offset: 6,
                fault: CharacterFault::Control,
            },
        ),
        (
            "\u{ff51}uay.io/x".into(),
            ImageError::InvalidCharacter {
                character: '\u{ff51}',
                offset: 0,
                fault: CharacterFault::NonAscii,
            },
        ),
        (
            "quay.io/caf\u{e9}".into(),
            ImageError::InvalidCharacter {
                character: '\u{e9}',
                offset: 11,
                fault: CharacterFault::NonAscii,
            },
        ),
        ("a@b@c".into(), ImageError::MultipleAt),
        ("HTTP://reg/x".into(), ImageError::SchemeNotAllowed),
        (
            "https://github.com/docker/docker".into(),
            ImageError::SchemeNotAllowed,
        ),
        ("user:pw@reg/x".into(), ImageError::UserInfoNotAllowed),
        ("user@reg.io/x".into(), ImageError::UserInfoNotAllowed),
        (
            "reg:99999/x".into(),
            ImageError::InvalidPort {
                port: "99999".into(),
            },
        ),
        (
            "reg:65536/x".into(),
            ImageError::InvalidPort {
                port: "65536".into(),
            },
        ),
        (
            "reg:0/x".into(),
            ImageError::InvalidPort { port: "0".into() },
        ),
        (
            "reg:000/x".into(),
            ImageError::InvalidPort { port: "000".into() },
        ),
        (
            "[::1]:70000/x".into(),
            ImageError::InvalidPort {
                port: "70000".into(),
            },
        ),
        (
            "reg:123456789012345678901234567890/x".into(),
            ImageError::InvalidPort {
                port: "123456789012345678901234567890".into(),
            },
        ),
        (hex(64), ImageError::HexName),
        (
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a".into(),
            ImageError::HexName,
        ),
        ("Uppercase:tag".into(), uppercase("library/Uppercase")),
        (
            "test:5000/Uppercase/lowercase:tag".into(),
            uppercase("Uppercase/lowercase"),
        ),
        ("docker/Docker".into(), uppercase("docker/Docker")),
        ("docker.io/docker/Docker".into(), uppercase("docker/Docker")),
        ("docker.io/Foo".into(), uppercase("library/Foo")),
        ("Foo".into(), uppercase("library/Foo")),
        (":justtag".into(), ImageError::InvalidFormat),
        (format!("@{SHA256}"), ImageError::InvalidFormat),
        ("aa/asdf$$^/aa".into(), ImageError::InvalidFormat),
        ("-docker".into(), ImageError::InvalidFormat),
        ("-docker/docker".into(), ImageError::InvalidFormat),
        ("docker-/docker".into(), ImageError::InvalidFormat),
        ("-docker-/docker".into(), ImageError::InvalidFormat),
        ("-docker.io/docker/docker".into(), ImageError::InvalidFormat),
        ("____/____".into(), ImageError::InvalidFormat),
        ("_docker/_docker".into(), ImageError::InvalidFormat),
        ("dock..er/docker".into(), ImageError::InvalidFormat),
        ("dock_.er/docker".into(), ImageError::InvalidFormat),
        ("dock-.er/docker".into(), ImageError::InvalidFormat),
        ("docker/".into(), ImageError::InvalidFormat),
        ("docker///docker".into(), ImageError::InvalidFormat),
        (
            "docker.io/docker///docker".into(),
            ImageError::InvalidFormat,
        ),
        ("[fc00::1]".into(), ImageError::InvalidFormat),
        ("[fc00::1]:5000".into(), ImageError::InvalidFormat),
        ("[::1]:5000".into(), ImageError::InvalidFormat),
        ("[2001:db8::1]:tag".into(), ImageError::InvalidFormat),
        ("fc00::1:5000/debian".into(), ImageError::InvalidFormat),
        ("[fe80::1%eth0]/x".into(), ImageError::InvalidFormat),
        (
            "[fe80::1%eth0]:5000/debian".into(),
            ImageError::InvalidFormat,
        ),
        (
            "[fe80::1%@invalidzone]:5000/repo".into(),
            ImageError::InvalidFormat,
        ),
        (
            "[2001:db8:3:4::192.0.2.33]:5000/debian".into(),
            ImageError::InvalidFormat,
        ),
        ("reg:/x".into(), ImageError::InvalidFormat),
        ("ubuntu:".into(), ImageError::InvalidFormat),
        ("ubuntu:-tag".into(), ImageError::InvalidFormat),
        // Upstream yields an empty domain here; registrar refuses instead.
        (
            "my_reg.local/x".into(),
            ImageError::InvalidDomain {
                domain: "my_reg.local".into(),
            },
        ),
        (
            "a_b.com/x".into(),
            ImageError::InvalidDomain {
                domain: "a_b.com".into(),
            },
        ),
        ("ubuntu@".into(), digest(DigestFault::Empty)),
        (
            "ubuntu@sha256".into(),
            digest(DigestFault::MissingSeparator),
        ),
        ("ubuntu@sha256:".into(), digest(DigestFault::MissingHex)),
        (
            format!("ubuntu@:{}", hex(64)),
            digest(DigestFault::MissingAlgorithm),
        ),
        (
            format!("validname@invaliddigest:{}", "f".repeat(64)),
            digest(DigestFault::UnsupportedAlgorithm {
                algorithm: "invaliddigest".into(),
            }),
        ),
        (
            format!("ubuntu@md5:{}", hex(32)),
            digest(DigestFault::UnsupportedAlgorithm {
                algorithm: "md5".into(),
            }),
        ),
        (
            format!("ubuntu@sha1:{}", hex(40)),
            digest(DigestFault::UnsupportedAlgorithm {
                algorithm: "sha1".into(),
            }),
        ),
        (
            format!("ubuntu@SHA256:{}", hex(64)),
            digest(DigestFault::UnsupportedAlgorithm {
                algorithm: "SHA256".into(),
            }),
        ),
        (
            format!("ubuntu@sha256:{}", "F".repeat(64)),
            digest(DigestFault::UppercaseHex),
        ),
        (
            format!("ubuntu@sha256:{}", "g".repeat(64)),
            digest(DigestFault::NotHex),
        ),
        (
            format!("repo@sha256:{}", "f".repeat(63)),
            digest(DigestFault::WrongLength {
                algorithm: "sha256",
                expected: 64,
                actual: 63,
            }),
        ),
        (
            "ubuntu@sha256:abc".into(),
            digest(DigestFault::WrongLength {
                algorithm: "sha256",
                expected: 64,
                actual: 3,
            }),
        ),
        (
            format!("ubuntu@sha384:{}", hex(64)),
            digest(DigestFault::WrongLength {
                algorithm: "sha384",
                expected: 96,
                actual: 64,
            }),
        ),
        (
            format!("ubuntu@sha512:{}", hex(129)),
            digest(DigestFault::WrongLength {
                algorithm: "sha512",
                expected: 128,
                actual: 129,
            }),
        ),
    ];
    for (input, expected) in &cases {
        // When parsed
        let result = ImageRef::parse(input);
        // Then the expected error comes back
        assert_eq!(result.as_ref(), Err(expected), "{input:?}");
    }
}

#[test]
fn error_messages_are_lowercase_and_name_the_fault() {
    // Given a few errors
    let cases = [
        ("", "invalid reference format: reference is empty"),
        (
            "docker/Docker",
            "invalid reference format: repository name (docker/Docker) must be lowercase",
        ),
        (
            "reg:99999/x",
            "invalid reference format: port 99999 is outside 1..=65535",
        ),
        (
            "ubuntu\0",
            "invalid reference format: control character '\\0' at byte 6",
        ),
        (
            "\u{ff51}uay.io/x",
            "invalid reference format: non-ascii character '\u{ff51}' at byte 0",
        ),
        (
            "ubuntu@sha256:abc",
            "invalid digest: sha256 digest must have 64 hex characters, got 3",
        ),
    ];
    for (input, expected) in cases {
        // When parsed / Then the message is as documented
        let message = ImageRef::parse(input).map_err(|e| e.to_string());
        assert_eq!(message, Err(expected.to_owned()), "{input:?}");
    }
}

#[test]
fn a_default_registry_takes_the_path_as_written() {
    // Given references without a registry part
    let cases = [
        ("ubuntu:14.04", "reg:5000", "reg:5000/ubuntu:14.04"),
        ("ubuntu", "reg:5000", "reg:5000/ubuntu:latest"),
        (
            "library/ubuntu",
            "reg:5000",
            "reg:5000/library/ubuntu:latest",
        ),
        ("foo/bar", "reg.io", "reg.io/foo/bar:latest"),
        ("ubuntu", "docker.io", "docker.io/library/ubuntu:latest"),
        (
            "ubuntu",
            "index.docker.io",
            "docker.io/library/ubuntu:latest",
        ),
        ("ubuntu", "Reg", "Reg/ubuntu:latest"),
        ("ubuntu", "[::1]:5000", "[::1]:5000/ubuntu:latest"),
        ("ubuntu", "localhost", "localhost/ubuntu:latest"),
    ];
    for (input, domain, expected) in cases {
        // When moved onto a domain
        let moved = ImageRef::parse(input).and_then(|r| r.with_domain(domain));
        // Then library/ appears only on docker.io, and the result names its domain
        let moved = moved.unwrap_or_else(|e| panic!("{input:?} onto {domain:?}: {e}"));
        assert_eq!(moved.to_string(), expected);
        assert!(moved.domain_explicit());
    }
}

#[test]
fn an_explicit_registry_moves_with_its_normalized_path() {
    // Given references that named their registry
    let cases = [
        (
            "docker.io/ubuntu",
            "reg:5000",
            "reg:5000/library/ubuntu:latest",
        ),
        (
            "quay.io/ubuntu",
            "docker.io",
            "docker.io/library/ubuntu:latest",
        ),
        ("quay.io/a/b:t", "reg.io", "reg.io/a/b:t"),
    ];
    for (input, domain, expected) in cases {
        // When moved
        let moved = ImageRef::parse(input).and_then(|r| r.with_domain(domain));
        // Then the normalized path is kept
        assert_eq!(
            moved.map(|r| r.to_string()),
            Ok(expected.to_owned()),
            "{input:?}"
        );
    }
    // And a digest travels along
    let pinned = ImageRef::parse(&format!("ubuntu@{SHA256}")).and_then(|r| r.with_domain("reg.io"));
    assert_eq!(
        pinned.map(|r| r.to_string()),
        Ok(format!("reg.io/ubuntu@{SHA256}"))
    );
}

#[test]
fn with_domain_refuses_what_docker_would_not_read_as_a_registry() {
    // Given a parsed reference
    let image = ImageRef::parse("ubuntu").expect("a familiar name parses");
    // When moved onto bad domains / Then each is refused
    for domain in ["", "reg", "a/b", "my_reg.local", "user@reg.io"] {
        assert!(
            matches!(
                image.with_domain(domain),
                Err(ImageError::InvalidDomain { .. }) | Err(ImageError::UserInfoNotAllowed)
            ),
            "{domain:?}"
        );
    }
    assert_eq!(
        image.with_domain("reg:99999"),
        Err(ImageError::InvalidPort {
            port: "99999".into()
        })
    );
    assert!(image.with_domain("reg .io").is_err());
    let long = format!("{}.io", "r".repeat(250));
    assert!(matches!(
        image.with_domain(&long),
        Err(ImageError::NameTooLong { .. })
    ));
}

#[test]
fn provenance_is_part_of_equality_but_not_of_the_formatted_form() {
    // Given the same image written with and without its registry
    let implied = ImageRef::parse("ubuntu").expect("a familiar name parses");
    let explicit = ImageRef::parse("docker.io/library/ubuntu").expect("a full name parses");
    // When compared / Then they print the same but differ, since a default registry applies only to one
    assert_eq!(implied.to_string(), explicit.to_string());
    assert_ne!(implied, explicit);
    assert_eq!(implied.with_domain("docker.io"), Ok(explicit.clone()));
    assert_eq!(ImageRef::parse("docker.io/ubuntu"), Ok(explicit));
    assert_eq!("ubuntu".parse::<ImageRef>(), Ok(implied));
}

fn domain_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,4}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,4}[a-zA-Z0-9])?){0,3}"
}

fn domain() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        domain_name(),
        Just("localhost".to_owned()),
        Just("docker.io".to_owned()),
        Just("index.docker.io".to_owned()),
        any::<[u8; 4]>().prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        // Docker reads a first component as a host only if it has '.' or ':'.
        "\\[[a-fA-F0-9]{0,4}:[a-fA-F0-9:]{0,12}\\]",
    ];
    (host, proptest::option::of(1u16..=65535)).prop_map(|(host, port)| match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

fn path() -> impl Strategy<Value = String> {
    let component = "[a-z0-9]{1,5}(([._]|__|-{1,3})[a-z0-9]{1,5}){0,3}";
    proptest::collection::vec(component, 1..=4).prop_map(|parts| parts.join("/"))
}

fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
}

fn digest() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-f0-9]{64}".prop_map(|h| format!("sha256:{h}")),
        "[a-f0-9]{96}".prop_map(|h| format!("sha384:{h}")),
        "[a-f0-9]{128}".prop_map(|h| format!("sha512:{h}")),
    ]
}

/// Checks that the formatted form parses back to the same reference.
fn assert_round_trip(image: &ImageRef) -> Result<(), TestCaseError> {
    let again = ImageRef::parse(&image.to_string())
        .map_err(|e| TestCaseError::fail(format!("{image} does not reparse: {e}")))?;
    prop_assert_eq!(again.to_string(), image.to_string());
    if image.domain_explicit() {
        prop_assert_eq!(&again, image);
    } else {
        // The formatted form names docker.io, so it reparses as an explicit reference.
        prop_assert_eq!(Ok(again), image.with_domain(DEFAULT_DOMAIN));
    }
    Ok(())
}

proptest! {
    #[test]
    fn references_generated_from_the_grammar_round_trip_through_display(
        domain in proptest::option::of(domain()),
        path in path(),
        tag in proptest::option::of(tag()),
        digest in proptest::option::of(digest()),
    ) {
        // Given a reference built from the grammar, leaving out domains Docker would read as a path
        let first = path.split('/').next().unwrap_or_default();
        prop_assume!(domain.is_some() || !path.contains('/') || !first.contains('.'));
        let mut input = match &domain {
            Some(domain) => format!("{domain}/{path}"),
            None => path.clone(),
        };
        if let Some(tag) = &tag {
            input = format!("{input}:{tag}");
        }
        if let Some(digest) = &digest {
            input = format!("{input}@{digest}");
        }
        // When parsed
        let image = ImageRef::parse(&input)
            .map_err(|e| TestCaseError::fail(format!("{input:?}: {e}")))?;
        // Then the parts are where Docker puts them and the formatted form round-trips
        prop_assert_eq!(image.digest(), digest.as_deref());
        let expected_tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG),
            (tag, _) => tag.as_deref(),
        };
        prop_assert_eq!(image.tag(), expected_tag);
        if let Some(domain) = &domain {
            let recognized = domain.contains(['.', ':'])
                || domain == "localhost"
                || domain.bytes().any(|b| b.is_ascii_uppercase());
            if recognized {
                let expected = if domain == "index.docker.io" { "docker.io" } else { domain.as_str() };
                prop_assert_eq!(image.domain(), expected);
                prop_assert!(image.domain_explicit());
            } else {
                prop_assert_eq!(image.domain(), DEFAULT_DOMAIN);
                prop_assert!(!image.domain_explicit());
            }
        } else {
            prop_assert_eq!(image.domain(), DEFAULT_DOMAIN);
        }
        assert_round_trip(&image)?;
    }

    #[test]
    fn parse_never_panics_on_arbitrary_text(input in "\\PC{0,300}|\\PC{300,2048}") {
        // Given any text / When parsed / Then it returns, and anything accepted round-trips
        if let Ok(image) = ImageRef::parse(&input) {
            assert_round_trip(&image)?;
        }
    }

    #[test]
    fn parse_never_panics_on_reference_like_text(
        input in "[a-zA-Z0-9:/@._\\-\\[\\]%]{0,300}|.{1000,1100}",
    ) {
        // Given text drawn mostly from the reference alphabet / When parsed
        if let Ok(image) = ImageRef::parse(&input) {
            // Then anything accepted has a domain, a legal port and round-trips
            prop_assert!(!image.domain().is_empty());
            prop_assert!(check_port(image.domain()).is_ok());
            prop_assert!(image.name().len() <= NAME_TOTAL_LENGTH_MAX);
            assert_round_trip(&image)?;
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes_as_text(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        // Given arbitrary bytes made into text / When parsed / Then it returns
        let input = String::from_utf8_lossy(&bytes);
        let _ = ImageRef::parse(&input);
    }
}

/// What the transcribed patterns' groups capture of `full`: name, tag,
/// digest, then the name's domain and path.
type Groups<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a str, &'a str);

fn captured(full: &str) -> Option<Groups<'_>> {
    let c = REFERENCE.captures(full)?;
    let name = c.get(1).map_or("", |m| m.as_str());
    let n = ANCHORED_NAME.captures(name)?;
    Some((
        name,
        c.get(2).map(|m| m.as_str()),
        c.get(3).map(|m| m.as_str()),
        n.get(1).map_or("", |m| m.as_str()),
        n.get(2).map_or("", |m| m.as_str()),
    ))
}

fn split(full: &str) -> Groups<'_> {
    let (name, tag, digest) = reference_parts(full);
    let (domain, path) = name_parts(name);
    (name, tag, digest, domain, path)
}

#[test]
fn the_split_agrees_with_the_groups_on_the_hard_cases() {
    for full in [
        "docker.io/library/ubuntu",
        "docker.io/library/ubuntu:14.04",
        "localhost:5000/foo/bar:tag@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
        "[::1]:5000/foo:1",
        "[fe80::1]/a/b",
        "my.reg:0443/x_y/z__w:v-1.2",
        "my_reg.local/x",
        "a.b/c.d/e:f",
        "docker.io/foo@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
    ] {
        let groups = captured(full);
        assert!(groups.is_some(), "{full} is a reference");
        assert_eq!(Some(split(full)), groups, "{full}");
    }
}

proptest! {
    #[test]
    fn the_split_agrees_with_the_groups_of_the_transcribed_patterns(
        domain in domain(),
        path in path(),
        tag in proptest::option::of(tag()),
        digest in proptest::option::of(digest()),
    ) {
        let mut full = format!("{domain}/{path}");
        if let Some(tag) = &tag {
            full = format!("{full}:{tag}");
        }
        if let Some(digest) = &digest {
            full = format!("{full}@{digest}");
        }
        let groups = captured(&full);
        prop_assert!(groups.is_some(), "{} is a reference", full);
        prop_assert_eq!(Some(split(&full)), groups);
    }

    #[test]
    fn the_split_agrees_with_the_groups_on_any_text_the_grammar_takes(
        full in "[a-z0-9A-Z:/@._\\[\\]-]{1,40}",
    ) {
        if let Some(groups) = captured(&full) {
            prop_assert_eq!(split(&full), groups);
        } else {
            prop_assert!(!REFERENCE.is_match(&full));
        }
    }
}
