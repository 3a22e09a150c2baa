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
#[path = "host_config_tests.rs"]
mod tests;
