//! Host trust files for container runtimes (Docker, containerd, containers/*,
//! K3s/RKE2): insecure-registry lists, CA bundles and K3s registry auth, rendered
//! as file contents so nobody edits `/etc/default/docker` or `certs.d` by hand.

use std::fmt;

use super::{json_string, PullAuth, DOCKER_HUB};

/// The runtime whose configuration files [`render`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFormat {
    /// Docker Engine; paths are relative to `/etc/docker`.
    Docker,
    /// containerd with `config_path = "/etc/containerd/certs.d"`; paths are relative to `/etc/containerd`.
    Containerd,
    /// containers-registries.conf(5) users (podman, skopeo, buildah, CRI-O); paths are relative to `/etc/containers`.
    Containers,
    /// K3s and RKE2 `registries.yaml`; paths are relative to `/etc/rancher/k3s`.
    K3s,
}

/// One registry as a host must be configured to reach it.
#[derive(Clone, Copy)]
pub struct HostRegistry<'a> {
    /// Canonical registry address (`host[:port]`, or [`DOCKER_HUB`]).
    pub address: &'a str,
    /// Whether to skip TLS verification and allow plain HTTP, as Docker's `insecure-registries` does.
    pub insecure: bool,
    /// PEM CA bundle to trust for this registry; empty (or blank) when none.
    pub ca_certificate_pem: &'a str,
    /// Credential to configure on the host; only [`HostFormat::K3s`] uses it.
    pub auth: Option<PullAuth<'a>>,
}

impl fmt::Debug for HostRegistry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The CA bundle is public but long; its size says enough in logs.
        let ca = format!("<{} bytes>", self.ca_certificate_pem.len());
        f.debug_struct("HostRegistry")
            .field("address", &self.address)
            .field("insecure", &self.insecure)
            .field("ca_certificate_pem", &format_args!("{ca}"))
            // PullAuth's own Debug redacts the password.
            .field("auth", &self.auth)
            .finish()
    }
}

/// One file to write on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    /// Path relative to the runtime's configuration root (see [`HostFormat`]); never absolute, never contains `..`.
    pub path: String,
    /// Unix permission bits: `0o600` when the file holds a secret, else `0o644`.
    pub mode: u32,
    /// Full file content.
    pub content: String,
}

const MODE_PUBLIC: u32 = 0o644;
const MODE_SECRET: u32 = 0o600;

/// Where Docker Hub is reached by runtimes that spell it `docker.io`.
const HUB_NAMESPACE: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
const HUB_UPSTREAM: &str = "registry-1.docker.io";

/// Renders the files a host needs for these registries.
///
/// Registries are taken sorted by address; when an address repeats, the first
/// entry wins. Only registries that are insecure or carry a CA bundle produce
/// trust entries; `auth` is only used by [`HostFormat::K3s`]. Files come back
/// sorted by path. Per format (paths relative to the root named on
/// [`HostFormat`]):
///
/// - **Docker** (`/etc/docker`): `daemon.json` with `insecure-registries`
///   (always emitted, possibly empty; pretty JSON — it must be *merged* into
///   an existing `daemon.json`, not written over it), plus
///   `certs.d/<address>/ca.crt` per CA bundle. Directory names are the
///   address as the daemon connects to it (`[::1]:5000` stays as is); Docker
///   Hub keeps `index.docker.io`.
/// - **Containerd** (`/etc/containerd`): `certs.d/<dir>/hosts.toml` and, with
///   a CA, `certs.d/<dir>/ca.crt`, per trusted registry; Docker Hub uses dir
///   `docker.io` and upstream `registry-1.docker.io`. An insecure registry
///   gets an `http://` server and host with `skip_verify = true`: containerd
///   then tries HTTPS without verification first and falls back to plain
///   HTTP (for ports other than 80), which matches Docker's
///   `insecure-registries`. Nothing is emitted when no registry needs trust.
/// - **Containers** (`/etc/containers`): `registries.conf` (v2 TOML, always
///   emitted) with one `[[registry]]` per insecure registry, plus
///   `certs.d/<address>/ca.crt` per CA bundle; Docker Hub is `docker.io`.
///   The file replaces the system `registries.conf`; to keep distribution
///   settings, install it as a drop-in under `registries.conf.d/` instead.
/// - **K3s** (`/etc/rancher/k3s`): `registries.yaml` (always emitted; mode
///   `0o600` when any registry has auth) with a `configs` entry per registry
///   that has auth or trust settings, plus `certs.d/<address>/ca.crt` per CA
///   bundle referenced by absolute `ca_file` paths under `/etc/rancher/k3s`
///   (on RKE2 put `registries.yaml` in `/etc/rancher/rke2` but keep the
///   certificates where `ca_file` points). Docker Hub is configured under
///   both `docker.io` and `registry-1.docker.io`, because K3s looks settings
///   up by registry name for the default endpoint and by endpoint host for
///   mirrors.
#[must_use]
pub fn render(format: HostFormat, registries: &[HostRegistry<'_>]) -> Vec<HostFile> {
    let mut regs: Vec<&HostRegistry<'_>> = registries.iter().collect();
    regs.sort_by(|a, b| a.address.cmp(b.address));
    regs.dedup_by(|later, earlier| later.address == earlier.address);
    let mut files = match format {
        HostFormat::Docker => render_docker(&regs),
        HostFormat::Containerd => render_containerd(&regs),
        HostFormat::Containers => render_containers(&regs),
        HostFormat::K3s => render_k3s(&regs),
    };
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

fn has_ca(reg: &HostRegistry<'_>) -> bool {
    !reg.ca_certificate_pem.trim().is_empty()
}

fn needs_trust(reg: &HostRegistry<'_>) -> bool {
    reg.insecure || has_ca(reg)
}

/// The name runtimes other than the Docker daemon use for Docker Hub.
fn namespace(address: &str) -> &str {
    if address == DOCKER_HUB {
        HUB_NAMESPACE
    } else {
        address
    }
}

/// Makes a single safe path component out of a registry name.
///
/// Addresses arrive canonical, so this normally changes nothing; it exists so
/// that no input can ever produce a path that escapes the config root.
fn path_component(name: &str) -> String {
    let cleaned = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect::<String>()
        .replace("..", "__");
    if cleaned.is_empty() || cleaned == "." {
        "_".to_owned()
    } else {
        cleaned
    }
}

fn ca_file(dir: &str, pem: &str) -> HostFile {
    let mut content = pem.to_owned();
    if !content.ends_with('\n') {
        content.push('\n');
    }
    HostFile {
        path: format!("certs.d/{dir}/ca.crt"),
        mode: MODE_PUBLIC,
        content,
    }
}

fn render_docker(regs: &[&HostRegistry<'_>]) -> Vec<HostFile> {
    let insecure: Vec<String> = regs
        .iter()
        .filter(|r| r.insecure)
        .map(|r| format!("    {}", json_string(r.address)))
        .collect();
    let list = if insecure.is_empty() {
        "[]".to_owned()
    } else {
        format!("[\n{}\n  ]", insecure.join(",\n"))
    };
    let mut files = vec![HostFile {
        path: "daemon.json".to_owned(),
        mode: MODE_PUBLIC,
        content: format!("{{\n  \"insecure-registries\": {list}\n}}\n"),
    }];
    files.extend(
        regs.iter()
            .filter(|r| has_ca(r))
            .map(|r| ca_file(&path_component(r.address), r.ca_certificate_pem)),
    );
    files
}

fn render_containerd(regs: &[&HostRegistry<'_>]) -> Vec<HostFile> {
    let mut files = Vec::new();
    for reg in regs.iter().filter(|r| needs_trust(r)) {
        let dir = path_component(namespace(reg.address));
        let upstream = if reg.address == DOCKER_HUB {
            HUB_UPSTREAM
        } else {
            reg.address
        };
        let scheme = if reg.insecure { "http" } else { "https" };
        let url = format!("{scheme}://{upstream}");
        let mut content = format!(
            "server = {url}\n\n[host.{url}]\n  capabilities = [\"pull\", \"resolve\"]\n",
            url = toml_string(&url)
        );
        if has_ca(reg) {
            let ca = format!("/etc/containerd/certs.d/{dir}/ca.crt");
            content.push_str(&format!("  ca = {}\n", toml_string(&ca)));
            files.push(ca_file(&dir, reg.ca_certificate_pem));
        }
        if reg.insecure {
            content.push_str("  skip_verify = true\n");
        }
        files.push(HostFile {
            path: format!("certs.d/{dir}/hosts.toml"),
            mode: MODE_PUBLIC,
            content,
        });
    }
    files
}

const GENERATED_HEADER: &str = "# Generated by registrar; do not edit by hand.\n";

fn render_containers(regs: &[&HostRegistry<'_>]) -> Vec<HostFile> {
    let mut conf = GENERATED_HEADER.to_owned();
    for reg in regs.iter().filter(|r| r.insecure) {
        conf.push_str(&format!(
            "\n[[registry]]\nlocation = {}\ninsecure = true\n",
            toml_string(namespace(reg.address))
        ));
    }
    let mut files = vec![HostFile {
        path: "registries.conf".to_owned(),
        mode: MODE_PUBLIC,
        content: conf,
    }];
    files.extend(
        regs.iter()
            .filter(|r| has_ca(r))
            .map(|r| ca_file(&path_component(namespace(r.address)), r.ca_certificate_pem)),
    );
    files
}

fn render_k3s(regs: &[&HostRegistry<'_>]) -> Vec<HostFile> {
    // (config key, certificate dir, registry), sorted by key below.
    let mut entries: Vec<(&str, String, &HostRegistry<'_>)> = Vec::new();
    let mut files = Vec::new();
    for reg in regs.iter().filter(|r| r.auth.is_some() || needs_trust(r)) {
        let dir = path_component(namespace(reg.address));
        if has_ca(reg) {
            files.push(ca_file(&dir, reg.ca_certificate_pem));
        }
        if reg.address == DOCKER_HUB {
            entries.push((HUB_NAMESPACE, dir.clone(), reg));
            entries.push((HUB_UPSTREAM, dir, reg));
        } else {
            entries.push((reg.address, dir, reg));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(b.0));

    let mut yaml = GENERATED_HEADER.to_owned();
    if entries.is_empty() {
        yaml.push_str("configs: {}\n");
    } else {
        yaml.push_str("configs:\n");
    }
    let mut secret = false;
    for (key, dir, reg) in &entries {
        yaml.push_str(&format!("  {}:\n", yaml_string(key)));
        if let Some(auth) = &reg.auth {
            secret = true;
            yaml.push_str(&format!(
                "    auth:\n      username: {}\n      password: {}\n",
                yaml_string(auth.username),
                yaml_string(auth.password)
            ));
        }
        if needs_trust(reg) {
            yaml.push_str("    tls:\n");
            if has_ca(reg) {
                let ca = format!("/etc/rancher/k3s/certs.d/{dir}/ca.crt");
                yaml.push_str(&format!("      ca_file: {}\n", yaml_string(&ca)));
            }
            if reg.insecure {
                yaml.push_str("      insecure_skip_verify: true\n");
            }
        }
    }
    files.push(HostFile {
        path: "registries.yaml".to_owned(),
        mode: if secret { MODE_SECRET } else { MODE_PUBLIC },
        content: yaml,
    });
    files
}

/// Quotes a string as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            // TOML forbids raw control characters, DEL included, in basic strings.
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Quotes a string as a YAML double-quoted scalar that reads back verbatim.
///
/// Everything outside printable ASCII is escaped: YAML 1.1 parsers (go-yaml,
/// which K3s uses) fold U+0085, U+2028 and U+2029 as line breaks inside
/// quoted scalars and reject C1 controls and a stray BOM, so leaving them
/// raw would change or break a password.
fn yaml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08X}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
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
}
