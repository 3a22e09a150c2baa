//! Given/when/then tests of pull resolution: R10, R11, R13, R15, R16, R17.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::domain::event::{Event, Orchestration};
use crate::domain::state::test_events;
use crate::domain::whitelist::Whitelist;

const ENV: &str = "e1";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Builds a state by folding events in.
struct Given(State);

impl Given {
    fn new() -> Self {
        let mut g = Self(State::default());
        g.event(Event::EnvironmentCreated {
            environment_id: ENV.into(),
            name: "prod".into(),
            orchestration: Orchestration::Cattle,
        });
        g
    }

    fn event(&mut self, event: Event) -> &mut Self {
        test_events::fold(&mut self.0, event, now());
        self
    }

    fn registry(&mut self, id: &str, address: &str, expire: Option<SystemTime>) -> &mut Self {
        self.event(test_events::registry_created(ENV, id, address, expire))
    }

    fn settings(&mut self, default: &str, whitelist: &[&str]) -> &mut Self {
        self.event(Event::SettingsUpdated {
            default_registry: (!default.is_empty()).then(|| Address::parse(default).unwrap()),
            whitelist: Whitelist::parse(whitelist).unwrap(),
        })
    }

    fn when(&self, target: Target<'_>) -> Result<Resolution<'_>> {
        resolve(&self.0, ENV, target, now())
    }
}

/// Returns why a pull of `s` is denied, `None` when it is allowed.
fn denial(g: &Given, s: &str) -> Option<DenyReason> {
    match g.when(Target::Image(s)).unwrap().decision {
        Decision::Denied(d) => Some(d),
        Decision::Allowed(_) => None,
    }
}

fn credential_of<'a>(r: &'a Resolution<'a>) -> Option<&'a str> {
    match r.decision {
        Decision::Allowed(Some(reg)) => Some(reg.id.as_str()),
        _ => None,
    }
}

#[test]
fn docker_hub_is_the_default_and_short_names_get_library() {
    let g = Given::new();
    let r = g.when(Target::Image("ubuntu:14.04")).unwrap();
    assert_eq!(r.resolved_image, "docker.io/library/ubuntu:14.04");
    assert_eq!(r.registry.as_str(), "index.docker.io");
    assert_eq!(
        r.decision,
        Decision::Allowed(None),
        "no registry entry: anonymous (R11)"
    );
}

#[test]
fn a_default_registry_applies_to_images_without_one() {
    let mut g = Given::new();
    g.settings("reg:5000", &[]);
    let r = g.when(Target::Image("ubuntu:14.04")).unwrap();
    assert_eq!(r.resolved_image, "reg:5000/ubuntu:14.04");
    assert_eq!(r.registry.as_str(), "reg:5000");
    let r = g.when(Target::Image("quay.io/org/app")).unwrap();
    assert_eq!(r.resolved_image, "quay.io/org/app:latest");
}

#[test]
fn an_active_registry_hands_out_its_credential_for_any_alias() {
    let mut g = Given::new();
    g.registry("hub", "index.docker.io", None);
    for input in [
        "nginx",
        "docker.io/library/nginx",
        "index.docker.io/nginx:1",
    ] {
        let r = g.when(Target::Image(input)).unwrap();
        assert_eq!(credential_of(&r), Some("hub"), "{input}");
    }
    let r = g.when(Target::Registry("registry-1.docker.io")).unwrap();
    assert_eq!(credential_of(&r), Some("hub"));
}

#[test]
fn a_port_is_part_of_the_registry() {
    let mut g = Given::new();
    g.registry("r", "reg.io:5000", None);
    assert_eq!(
        credential_of(&g.when(Target::Image("reg.io:5000/a")).unwrap()),
        Some("r")
    );
    assert_eq!(
        credential_of(&g.when(Target::Image("reg.io/a")).unwrap()),
        None
    );
}

#[test]
fn an_inactive_registry_denies_pulls() {
    let mut g = Given::new();
    g.registry("r", "reg.io", None);
    g.event(Event::RegistryDeactivated {
        registry_id: "r".into(),
    });
    let r = g.when(Target::Image("reg.io/a")).unwrap();
    assert_eq!(r.decision, Decision::Denied(DenyReason::RegistryInactive));
}

#[test]
fn a_deleted_registry_means_anonymous_pulls() {
    let mut g = Given::new();
    g.registry("r", "reg.io", None);
    g.event(Event::RegistryDeleted {
        registry_id: "r".into(),
        credential_id: "c-r".into(),
    });
    assert_eq!(
        g.when(Target::Image("reg.io/a")).unwrap().decision,
        Decision::Allowed(None)
    );
}

#[test]
fn an_expired_credential_is_never_handed_out() {
    let mut g = Given::new();
    g.registry("old", "old.io", Some(now()));
    g.registry("new", "new.io", Some(now() + Duration::from_secs(1)));
    assert_eq!(
        g.when(Target::Image("old.io/a")).unwrap().decision,
        Decision::Denied(DenyReason::CredentialExpired)
    );
    assert_eq!(
        credential_of(&g.when(Target::Image("new.io/a")).unwrap()),
        Some("new")
    );
}

#[test]
fn the_whitelist_names_which_registry_was_refused() {
    let mut g = Given::new();
    g.settings("", &["reg:5000"]);
    // Docker Hub is no longer allowed once the list is non-empty.
    assert_eq!(
        denial(&g, "ubuntu"),
        Some(DenyReason::DefaultNotWhitelisted)
    );
    assert_eq!(
        denial(&g, "docker.io/library/ubuntu"),
        Some(DenyReason::NotWhitelisted)
    );
    assert_eq!(denial(&g, "reg:5000/x"), None);
    assert_eq!(
        DenyReason::NotWhitelisted.message(),
        "The provided registry is not whitelisted"
    );
}

#[test]
fn a_default_registry_outside_the_whitelist_is_default_not_whitelisted() {
    let mut g = Given::new();
    g.settings("reg:5000", &["quay.io"]);
    assert_eq!(
        denial(&g, "ubuntu"),
        Some(DenyReason::DefaultNotWhitelisted)
    );
    assert_eq!(
        denial(&g, "reg:5000/ubuntu"),
        Some(DenyReason::NotWhitelisted)
    );
    assert_eq!(denial(&g, "quay.io/x"), None);
}

#[test]
fn whitelist_prefixes_match_on_path_boundaries_and_hosts_exactly() {
    let mut g = Given::new();
    g.settings(
        "",
        &[
            "quay.io/myorg/",
            "myreg.io",
            "*.dkr.ecr.*.amazonaws.com",
            "docker.io",
        ],
    );
    let allowed = |s: &str| denial(&g, s).is_none();
    assert!(allowed("quay.io/myorg/app"));
    assert!(!allowed("quay.io/myorgevil/x"));
    assert!(allowed("myreg.io/x"));
    assert!(!allowed("myreg.io.evil.com/x"));
    assert!(allowed("123456789012.dkr.ecr.us-west-2.amazonaws.com/app"));
    assert!(!allowed(
        "a.123456789012.dkr.ecr.us-west-2.amazonaws.com/app"
    ));
    assert!(allowed("nginx"), "docker.io listed means Hub is allowed");
}

#[test]
fn bad_images_are_invalid_and_name_the_field() {
    let g = Given::new();
    let huge = "a".repeat(10 * 1024 * 1024);
    let digest = format!("a@sha256:{}", "A".repeat(64));
    let tag = format!("a:{}", "t".repeat(129));
    for input in [
        "",
        huge.as_str(),
        "a\0b",
        "ａ/b",
        "HTTP://reg/x",
        "user:pw@reg/x",
        "reg:99999/x",
        "reg.io/UPPER",
        tag.as_str(),
        "a@sha256:",
        "a@sha256:abc",
        digest.as_str(),
        "a@b@c",
    ] {
        match g.when(Target::Image(input)) {
            Err(Error::Invalid { field, message }) => {
                assert_eq!(field, "image", "{input:.40}");
                assert!(!message.contains("pw"), "{message}");
            }
            other => panic!("{input:.40}: expected invalid, got {other:?}"),
        }
    }
}

#[test]
fn a_registry_question_rejects_wildcards_and_schemes() {
    let g = Given::new();
    for input in ["*.reg.io", "https://reg.io", "reg.io/path", ""] {
        assert!(
            matches!(
                g.when(Target::Registry(input)),
                Err(Error::Invalid {
                    field: "registry",
                    ..
                })
            ),
            "{input}"
        );
    }
}
