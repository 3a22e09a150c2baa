//! Disk full: the data directory on a small tmpfs that the test mounts. It
//! needs root, so it is built only with `--features root` (`.ci/run` turns
//! it on, as root); without root it fails rather than skips. Writes fail with
//! RESOURCE_EXHAUSTED and never answer OK for what was not persisted; reads
//! keep working; writes resume, without a restart, once space returns.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{allowed, custom};
use registrar::config::ServeConfig;
use registrar::pb;
use registrar::testing::Running;
use tonic::Code;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs failed (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the file system until a write fails for lack of space.
fn fill(path: &Path) -> std::fs::File {
    let mut f = std::fs::File::create(path).expect("filler file");
    let chunk = vec![0xA5u8; 16 * 1024];
    loop {
        match f.write_all(&chunk).and_then(|()| f.sync_all()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => return f,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers_without_a_restart() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mount = tmp.path().join("mnt");
    let fs = Tmpfs::mount(&mount, "16m");
    let mut config = ServeConfig::for_dir(mount.join("data"));
    config.key_file = Some(tmp.path().join("key"));

    let server = Running::start(config.clone(), Default::default())
        .await
        .expect("server starts");
    let admin = server.admin_token.clone();
    let clients = |url: String, token: String| async move {
        let ch = tonic::transport::Channel::from_shared(url)
            .expect("url")
            .timeout(Duration::from_secs(20))
            .connect()
            .await
            .expect("connect");
        let bearer = common::Bearer::new(Some(&token));
        common::Clients::over(ch, bearer)
    };
    let mut c = clients(server.url(), admin.clone()).await;
    let env = c.create_env("prod", pb::Orchestration::Cattle).await;
    let first = c
        .reg
        .create_registry(pb::CreateRegistryRequest {
            request_id: "first".into(),
            ..custom(&env, "first.example.com", "u", "pw-first")
        })
        .await
        .expect("a write before the disk fills")
        .into_inner()
        .registry
        .expect("registry");

    let filler = mount.join("filler");
    let file = fill(&filler);

    // Writes while the disk is full: each is OK (then it must survive) or
    // RESOURCE_EXHAUSTED; nothing else.
    let mut acknowledged = vec![("first.example.com".to_owned(), "pw-first".to_owned())];
    let mut exhausted = 0;
    for i in 0..40 {
        let address = format!("full-{i}.example.com");
        let password = format!("pw-full-{i}");
        let r = c
            .reg
            .create_registry(pb::CreateRegistryRequest {
                request_id: format!("full-{i}"),
                ..custom(&env, &address, "u", &password)
            })
            .await;
        match r {
            Ok(_) => acknowledged.push((address, password)),
            Err(s) if s.code() == Code::ResourceExhausted => {
                exhausted += 1;
                assert!(!s.message().contains(&password), "{s:?}");
            }
            Err(s) => panic!("a write on a full disk answered {s:?}"),
        }
    }
    assert!(exhausted > 0, "no write failed on a full disk");

    // Reads keep working.
    let got = c
        .reg
        .get_registry(pb::GetRegistryRequest {
            min_revision: 0,
            id: first.id.clone(),
        })
        .await
        .expect("get on a full disk")
        .into_inner();
    assert_eq!(got.registry.expect("registry").id, first.id);
    assert!(!c.list(&env).await.is_empty());
    let answer = c
        .resolve(&env, "first.example.com/app:1")
        .await
        .expect("resolve on a full disk");
    let credential = allowed(&answer).credential.clone().expect("credential");
    assert_eq!(credential.password, "pw-first");

    // Space returns: writes resume without a restart.
    drop(file);
    std::fs::remove_file(&filler).expect("remove filler");
    let started = Instant::now();
    let resumed = loop {
        let r = c
            .reg
            .create_registry(pb::CreateRegistryRequest {
                request_id: "after".into(),
                ..custom(&env, "after.example.com", "u", "pw-after")
            })
            .await;
        match r {
            Ok(r) => break r.into_inner().registry.expect("registry"),
            Err(s) if s.code() == Code::ResourceExhausted || s.code() == Code::Unavailable => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "writes did not resume after space returned: {s:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("a write after space returned answered {s:?}"),
        }
    };
    acknowledged.push(("after.example.com".to_owned(), "pw-after".to_owned()));
    assert_eq!(resumed.address, "after.example.com");
    // Every refused write can be retried with its request id.
    for i in 0..40 {
        let address = format!("full-{i}.example.com");
        let password = format!("pw-full-{i}");
        c.reg
            .create_registry(pb::CreateRegistryRequest {
                request_id: format!("full-{i}"),
                ..custom(&env, &address, "u", &password)
            })
            .await
            .expect("a retry after space returned");
        if !acknowledged.iter().any(|(a, _)| a == &address) {
            acknowledged.push((address, password));
        }
    }

    // Everything acknowledged survives a restart, with its password.
    server.stop().await.expect("clean stop");
    let server = Running::start(config, Default::default())
        .await
        .expect("restart");
    let mut c = clients(server.url(), admin).await;
    for (address, password) in &acknowledged {
        let answer = c
            .resolve(&env, &format!("{address}/app:1"))
            .await
            .expect("resolve after restart");
        let credential = allowed(&answer).credential.clone().expect("credential");
        assert_eq!(&credential.password, password, "{address}");
    }
    server.stop().await.expect("clean stop");
    drop(fs);
}
