//! Tests of `host_config.rs`: golden files, each parsed back by a real parser.

use super::*;

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
const PEM_NL: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn reg(address: &str) -> HostRegistry<'_> {
    HostRegistry {
        address,
        insecure: false,
        ca_certificate_pem: "",
        auth: None,
    }
}

/// plain, insecure, with CA, IPv6 (insecure + CA), Docker Hub (CA + auth).
fn sample() -> Vec<HostRegistry<'static>> {
    vec![
        HostRegistry {
            auth: Some(PullAuth {
                registry: DOCKER_HUB,
                username: "hubuser",
                password: "p\"w\\d\u{e9}\u{2028}",
                email: "",
            }),
            ca_certificate_pem: PEM,
            ..reg(DOCKER_HUB)
        },
        reg("plain.example.com"),
        HostRegistry {
            insecure: true,
            ..reg("10.0.0.1:5000")
        },
        HostRegistry {
            ca_certificate_pem: PEM,
            ..reg("ca.example.com:5443")
        },
        HostRegistry {
            insecure: true,
            ca_certificate_pem: PEM_NL,
            ..reg("[::1]:5000")
        },
    ]
}

fn find<'f>(files: &'f [HostFile], path: &str) -> &'f HostFile {
    files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no {path} in {:?}", paths(files)))
}

fn paths(files: &[HostFile]) -> Vec<&str> {
    files.iter().map(|f| f.path.as_str()).collect()
}

fn assert_safe_paths(files: &[HostFile]) {
    for f in files {
        assert!(!f.path.starts_with('/'), "{}", f.path);
        assert!(
            !f.path
                .split('/')
                .any(|c| c == ".." || c == "." || c.is_empty()),
            "{}",
            f.path
        );
    }
}

fn assert_ca_files(files: &[HostFile]) {
    for f in files.iter().filter(|f| f.path.ends_with("ca.crt")) {
        assert_eq!(f.content, PEM_NL, "{}", f.path);
        assert_eq!(f.mode, 0o644);
    }
}

#[test]
fn docker_golden() {
    let files = render(HostFormat::Docker, &sample());
    assert_eq!(
        paths(&files),
        [
            "certs.d/[::1]:5000/ca.crt",
            "certs.d/ca.example.com:5443/ca.crt",
            "certs.d/index.docker.io/ca.crt",
            "daemon.json",
        ]
    );
    let daemon = find(&files, "daemon.json");
    assert_eq!(daemon.mode, 0o644);
    assert_eq!(
        daemon.content,
        "{\n  \"insecure-registries\": [\n    \"10.0.0.1:5000\",\n    \"[::1]:5000\"\n  ]\n}\n"
    );
    let v: serde_json::Value = serde_json::from_str(&daemon.content).unwrap();
    assert_eq!(
        v["insecure-registries"],
        serde_json::json!(["10.0.0.1:5000", "[::1]:5000"])
    );
    assert_eq!(v.as_object().unwrap().len(), 1);
    assert_ca_files(&files);
    assert_safe_paths(&files);
}

#[test]
fn containerd_golden() {
    let files = render(HostFormat::Containerd, &sample());
    assert_eq!(
        paths(&files),
        [
            "certs.d/10.0.0.1:5000/hosts.toml",
            "certs.d/[::1]:5000/ca.crt",
            "certs.d/[::1]:5000/hosts.toml",
            "certs.d/ca.example.com:5443/ca.crt",
            "certs.d/ca.example.com:5443/hosts.toml",
            "certs.d/docker.io/ca.crt",
            "certs.d/docker.io/hosts.toml",
        ]
    );
    assert_eq!(
        find(&files, "certs.d/10.0.0.1:5000/hosts.toml").content,
        "server = \"http://10.0.0.1:5000\"\n\n\
         [host.\"http://10.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n"
    );
    assert_eq!(
        find(&files, "certs.d/[::1]:5000/hosts.toml").content,
        "server = \"http://[::1]:5000\"\n\n\
         [host.\"http://[::1]:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n  \
         ca = \"/etc/containerd/certs.d/[::1]:5000/ca.crt\"\n  skip_verify = true\n"
    );
    assert_eq!(
        find(&files, "certs.d/ca.example.com:5443/hosts.toml").content,
        "server = \"https://ca.example.com:5443\"\n\n\
         [host.\"https://ca.example.com:5443\"]\n  capabilities = [\"pull\", \"resolve\"]\n  \
         ca = \"/etc/containerd/certs.d/ca.example.com:5443/ca.crt\"\n"
    );
    assert_eq!(
        find(&files, "certs.d/docker.io/hosts.toml").content,
        "server = \"https://registry-1.docker.io\"\n\n\
         [host.\"https://registry-1.docker.io\"]\n  capabilities = [\"pull\", \"resolve\"]\n  \
         ca = \"/etc/containerd/certs.d/docker.io/ca.crt\"\n"
    );

    // Parse every hosts.toml back and check field by field.
    let cases = [
        ("10.0.0.1:5000", "http://10.0.0.1:5000", None, true),
        (
            "[::1]:5000",
            "http://[::1]:5000",
            Some("/etc/containerd/certs.d/[::1]:5000/ca.crt"),
            true,
        ),
        (
            "ca.example.com:5443",
            "https://ca.example.com:5443",
            Some("/etc/containerd/certs.d/ca.example.com:5443/ca.crt"),
            false,
        ),
        (
            "docker.io",
            "https://registry-1.docker.io",
            Some("/etc/containerd/certs.d/docker.io/ca.crt"),
            false,
        ),
    ];
    for (dir, url, ca, insecure) in cases {
        let f = find(&files, &format!("certs.d/{dir}/hosts.toml"));
        assert_eq!(f.mode, 0o644);
        let v: toml::Table = toml::from_str(&f.content).unwrap();
        assert_eq!(v["server"].as_str(), Some(url));
        let hosts = v["host"].as_table().unwrap();
        assert_eq!(hosts.len(), 1);
        let host = hosts[url].as_table().unwrap();
        let caps: Vec<&str> = host["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(caps, ["pull", "resolve"]);
        assert_eq!(host.get("ca").and_then(|c| c.as_str()), ca);
        assert_eq!(
            host.get("skip_verify").and_then(|s| s.as_bool()),
            insecure.then_some(true)
        );
    }
    assert_ca_files(&files);
    assert_safe_paths(&files);
}

#[test]
fn containers_golden() {
    let files = render(HostFormat::Containers, &sample());
    assert_eq!(
        paths(&files),
        [
            "certs.d/[::1]:5000/ca.crt",
            "certs.d/ca.example.com:5443/ca.crt",
            "certs.d/docker.io/ca.crt",
            "registries.conf",
        ]
    );
    let conf = find(&files, "registries.conf");
    assert_eq!(conf.mode, 0o644);
    assert_eq!(
        conf.content,
        "# Generated by registrar; do not edit by hand.\n\
         \n[[registry]]\nlocation = \"10.0.0.1:5000\"\ninsecure = true\n\
         \n[[registry]]\nlocation = \"[::1]:5000\"\ninsecure = true\n"
    );
    let v: toml::Table = toml::from_str(&conf.content).unwrap();
    let list = v["registry"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for (entry, location) in list.iter().zip(["10.0.0.1:5000", "[::1]:5000"]) {
        assert_eq!(entry["location"].as_str(), Some(location));
        assert_eq!(entry["insecure"].as_bool(), Some(true));
    }
    assert_ca_files(&files);
    assert_safe_paths(&files);
}

#[test]
fn k3s_golden() {
    let files = render(HostFormat::K3s, &sample());
    assert_eq!(
        paths(&files),
        [
            "certs.d/[::1]:5000/ca.crt",
            "certs.d/ca.example.com:5443/ca.crt",
            "certs.d/docker.io/ca.crt",
            "registries.yaml",
        ]
    );
    let yaml = find(&files, "registries.yaml");
    assert_eq!(yaml.mode, 0o600);
    let hub = "    auth:\n      username: \"hubuser\"\n      password: \"p\\\"w\\\\d\\u00E9\\u2028\"\n    \
               tls:\n      ca_file: \"/etc/rancher/k3s/certs.d/docker.io/ca.crt\"\n";
    let expected = format!(
        "# Generated by registrar; do not edit by hand.\nconfigs:\n  \
         \"10.0.0.1:5000\":\n    tls:\n      insecure_skip_verify: true\n  \
         \"[::1]:5000\":\n    tls:\n      ca_file: \"/etc/rancher/k3s/certs.d/[::1]:5000/ca.crt\"\n      insecure_skip_verify: true\n  \
         \"ca.example.com:5443\":\n    tls:\n      ca_file: \"/etc/rancher/k3s/certs.d/ca.example.com:5443/ca.crt\"\n  \
         \"docker.io\":\n{hub}  \
         \"registry-1.docker.io\":\n{hub}"
    );
    assert_eq!(yaml.content, expected);

    let v: serde_yaml::Value = serde_yaml::from_str(&yaml.content).unwrap();
    let configs = v["configs"].as_mapping().unwrap();
    assert_eq!(configs.len(), 5);
    let insecure = &configs["10.0.0.1:5000"];
    assert_eq!(
        insecure["tls"]["insecure_skip_verify"].as_bool(),
        Some(true)
    );
    assert!(insecure.get("auth").is_none());
    assert!(insecure["tls"].get("ca_file").is_none());
    let v6 = &configs["[::1]:5000"];
    assert_eq!(
        v6["tls"]["ca_file"].as_str(),
        Some("/etc/rancher/k3s/certs.d/[::1]:5000/ca.crt")
    );
    assert_eq!(v6["tls"]["insecure_skip_verify"].as_bool(), Some(true));
    let ca = &configs["ca.example.com:5443"];
    assert!(ca["tls"].get("insecure_skip_verify").is_none());
    for key in ["docker.io", "registry-1.docker.io"] {
        let hub = &configs[key];
        assert_eq!(hub["auth"]["username"].as_str(), Some("hubuser"));
        assert_eq!(
            hub["auth"]["password"].as_str(),
            Some("p\"w\\d\u{e9}\u{2028}")
        );
        assert_eq!(
            hub["tls"]["ca_file"].as_str(),
            Some("/etc/rancher/k3s/certs.d/docker.io/ca.crt")
        );
    }
    assert!(configs.get("plain.example.com").is_none());
    assert_ca_files(&files);
    assert_safe_paths(&files);
}

#[test]
fn k3s_without_auth_is_not_secret_and_plain_auth_only_entry() {
    let files = render(
        HostFormat::K3s,
        &[HostRegistry {
            insecure: true,
            ..reg("r.io")
        }],
    );
    assert_eq!(find(&files, "registries.yaml").mode, 0o644);

    let files = render(
        HostFormat::K3s,
        &[HostRegistry {
            auth: Some(PullAuth {
                registry: "r.io",
                username: "u",
                password: "p",
                email: "",
            }),
            ..reg("r.io")
        }],
    );
    let yaml = find(&files, "registries.yaml");
    assert_eq!(yaml.mode, 0o600);
    let v: serde_yaml::Value = serde_yaml::from_str(&yaml.content).unwrap();
    assert_eq!(v["configs"]["r.io"]["auth"]["password"].as_str(), Some("p"));
    assert!(v["configs"]["r.io"].get("tls").is_none());
}

#[test]
fn empty_lists_give_valid_empty_files() {
    let docker = render(HostFormat::Docker, &[]);
    assert_eq!(paths(&docker), ["daemon.json"]);
    assert_eq!(docker[0].content, "{\n  \"insecure-registries\": []\n}\n");
    let v: serde_json::Value = serde_json::from_str(&docker[0].content).unwrap();
    assert_eq!(v["insecure-registries"], serde_json::json!([]));

    assert!(render(HostFormat::Containerd, &[]).is_empty());

    let containers = render(HostFormat::Containers, &[]);
    assert_eq!(paths(&containers), ["registries.conf"]);
    let v: toml::Table = toml::from_str(&containers[0].content).unwrap();
    assert!(v.is_empty());

    let k3s = render(HostFormat::K3s, &[]);
    assert_eq!(paths(&k3s), ["registries.yaml"]);
    assert_eq!(k3s[0].mode, 0o644);
    let v: serde_yaml::Value = serde_yaml::from_str(&k3s[0].content).unwrap();
    assert!(v["configs"].as_mapping().unwrap().is_empty());

    // Plain registries need no trust entries either.
    assert!(render(HostFormat::Containerd, &[reg("plain.example.com")]).is_empty());
}

#[test]
fn duplicates_keep_the_first_entry() {
    let files = render(
        HostFormat::Docker,
        &[
            HostRegistry {
                insecure: true,
                ..reg("r.io")
            },
            reg("r.io"),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&files[0].content).unwrap();
    assert_eq!(v["insecure-registries"], serde_json::json!(["r.io"]));
}

#[test]
fn hostile_addresses_cannot_escape_the_root() {
    let bad = ["..", ".", "", "../../etc", "/abs", "a\\b", "x\ny"];
    let regs: Vec<HostRegistry<'_>> = bad
        .iter()
        .map(|a| HostRegistry {
            insecure: true,
            ca_certificate_pem: PEM,
            ..reg(a)
        })
        .collect();
    for format in [
        HostFormat::Docker,
        HostFormat::Containerd,
        HostFormat::Containers,
        HostFormat::K3s,
    ] {
        let files = render(format, &regs);
        assert_safe_paths(&files);
        for f in &files {
            assert!(!f.path.contains(".."), "{format:?} {}", f.path);
        }
    }
}

#[test]
fn escaping_round_trips_through_real_parsers() {
    let nasty = "q\"b\\s\n\r\t\u{0}\u{1f}\u{7f}\u{85}\u{a0}\u{2028}\u{feff}é🦀 #: {x}";
    let toml_doc = format!("k = {}\n", toml_string(nasty));
    let v: toml::Table = toml::from_str(&toml_doc).unwrap();
    assert_eq!(v["k"].as_str(), Some(nasty));

    let yaml_doc = format!("k: {}\n", yaml_string(nasty));
    let v: serde_yaml::Value = serde_yaml::from_str(&yaml_doc).unwrap();
    assert_eq!(v["k"].as_str(), Some(nasty));
    assert!(yaml_string(nasty).is_ascii());
}

#[test]
fn debug_redacts_auth() {
    let r = HostRegistry {
        auth: Some(PullAuth {
            registry: "r.io",
            username: "u",
            password: "very-secret-pw",
            email: "",
        }),
        ca_certificate_pem: PEM,
        ..reg("r.io")
    };
    let printed = format!("{r:?} {r:#?}");
    assert!(!printed.contains("very-secret-pw"), "{printed}");
    assert!(!printed.contains("MIIB"), "{printed}");
    assert!(printed.contains("<redacted>"));
}
