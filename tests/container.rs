//! deploy/container/: the image builds offline with Debian's `buildah` from
//! the binaries cargo built; its file system, extracted from the OCI
//! layout, holds both binaries and no shell; and its entrypoint, started as
//! the image says (its user, its command, chrooted into its file system),
//! serves and reports healthy. Needs root (buildah's storage, chroot) and
//! buildah: feature `e2e` and `root`, as `.ci/run` runs it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} did not start ({e}); this test needs Debian's `buildah` (apt-get install buildah) and GNU tar"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn buildah() -> Command {
    let mut c = Command::new("buildah");
    c.args(["--storage-driver", "vfs"]);
    c
}

fn blob(oci: &Path, digest: &str) -> PathBuf {
    oci.join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Removes the image when the test ends, passed or not.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = buildah()
            .args(["rmi", "-f", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_builds_offline_and_its_entrypoint_serves_as_its_config_says() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_registrar")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("context");
    run(Command::new(repo.join("deploy/container/context.sh"))
        .arg(bin_dir)
        .arg(&context));

    let tag = format!("localhost/registrar-test:{}", uuid::Uuid::new_v4().simple());
    let image = Image(tag.clone());
    run(buildah()
        .args(["bud", "--isolation", "chroot", "--pull=never", "-f"])
        .arg(repo.join("deploy/container/Containerfile"))
        .args(["-t", &tag])
        .arg(&context));
    let oci = dir.path().join("oci");
    run(buildah()
        .args(["push", &image.0])
        .arg(format!("oci:{}", oci.display())));

    // The OCI layout: index, manifest, config, layers.
    let index = json(&oci.join("index.json"));
    let manifest = json(&blob(
        &oci,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let config = json(&blob(&oci, manifest["config"]["digest"].as_str().unwrap()));
    let config = &config["config"];
    assert_eq!(config["User"], "65532:65532");
    assert!(
        config["Volumes"].get("/var/lib/registrar").is_some(),
        "{config}"
    );
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        run(Command::new("tar")
            .arg("-xf")
            .arg(blob(&oci, layer["digest"].as_str().unwrap()))
            .arg("-C")
            .arg(&rootfs));
    }
    for program in ["registrar", "docker-credential-registrar"] {
        assert!(
            rootfs.join("usr/local/bin").join(program).is_file(),
            "{program}"
        );
    }
    assert!(!rootfs.join("bin/sh").exists(), "no shell in the image");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        std::fs::metadata(rootfs.join("var/lib/registrar"))
            .unwrap()
            .uid(),
        65532,
        "the data volume belongs to the image's user"
    );

    // The key, mounted where the command says, as a mount would give it.
    let key = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    };
    let kek = rootfs.join("etc/registrar/key/kek");
    std::fs::write(&kek, format!("{key}\n")).unwrap();
    std::os::unix::fs::chown(&kek, Some(65532), Some(65532)).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o400)).unwrap();

    // Started as the image says: its user, its entrypoint and command, its
    // environment, inside its file system.
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    let mut argv = strings(&config["Entrypoint"]);
    argv.extend(strings(&config["Cmd"]));
    let listen = argv
        .iter()
        .find_map(|a| a.strip_prefix("--listen="))
        .expect("the command names its address")
        .to_owned();
    let port = listen.rsplit(':').next().unwrap().to_owned();
    let mut cmd = Command::new("chroot");
    cmd.arg(format!("--userspec={}", config["User"].as_str().unwrap()))
        .arg(&rootfs)
        .args(&argv)
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for pair in strings(&config["Env"]) {
        let (k, v) = pair.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let status = common::wait_for_health(&url, &mut child, 150).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        status,
        Some(tonic_health::pb::health_check_response::ServingStatus::Serving as i32),
        "the image's entrypoint serves"
    );
    let token = rootfs.join("var/lib/registrar/data/admin.token");
    assert_eq!(std::fs::metadata(&token).unwrap().uid(), 65532);
    drop(image);
}
