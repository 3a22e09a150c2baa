//! `registrar host-config` and `registrar pull-secret`: the files a host
//! needs, written atomically under one directory.

use std::io::Write;
use std::path::{Component, Path};

use super::{connect, print_json};
use crate::cli::args::{ClientArgs, HostFormatArg};
use crate::cli::table::Table;
use crate::cli::{json, Error, Result};
use crate::pb;

/// Checks that a path from the server stays under the target directory.
fn safe_relative(path: &str) -> Result<&Path> {
    let p = Path::new(path);
    let ok = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(p)
    } else {
        Err(Error::Usage(format!(
            "the server sent a file path that is not a plain relative path: {path:?}"
        )))
    }
}

/// Writes a file atomically with the given mode, creating its directories.
fn write_file(dir: &Path, relative: &Path, mode: u32, content: &str) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = dir.join(relative);
    let io = |context: String| move |source| Error::Io { context, source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    let tmp = path.with_extension("registrar-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(format!("writing {}", tmp.display())))?;
    f.write_all(content.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("setting the mode of {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(io(format!("writing {}", path.display())))?;
    Ok(())
}

pub(super) async fn host_config(
    client: &ClientArgs,
    env: &str,
    format: HostFormatArg,
    dir: Option<&Path>,
    include_auth: bool,
) -> Result<()> {
    let format = match format {
        HostFormatArg::Docker => pb::HostConfigFormat::Docker,
        HostFormatArg::Containerd => pb::HostConfigFormat::Containerd,
        HostFormatArg::Containers => pb::HostConfigFormat::Containers,
        HostFormatArg::K3s => pb::HostConfigFormat::K3s,
    };
    let conn = connect(client).await?;
    let r = conn
        .answer(conn.pulls().get_host_config(pb::GetHostConfigRequest {
            min_revision: 0,
            environment_id: env.to_owned(),
            format: format as i32,
            include_auth,
        }))
        .await?;
    for f in &r.files {
        safe_relative(&f.path)?;
    }
    let Some(dir) = dir else {
        if client.json {
            print_json(&serde_json::json!({
                "files": r.files.iter().map(|f| json::host_file(f, true)).collect::<Vec<_>>(),
                "revision": r.revision.to_string(),
            }));
        } else {
            for f in &r.files {
                println!("== {} (mode {:o})", f.path, f.mode);
                print!("{}", f.content);
                if !f.content.ends_with('\n') {
                    println!();
                }
            }
        }
        return Ok(());
    };
    for f in &r.files {
        write_file(dir, safe_relative(&f.path)?, f.mode, &f.content)?;
    }
    if client.json {
        print_json(&serde_json::json!({
            "dir": dir.display().to_string(),
            "files": r.files.iter().map(|f| json::host_file(f, false)).collect::<Vec<_>>(),
            "revision": r.revision.to_string(),
        }));
    } else {
        let mut t = Table::new(&["MODE", "FILE"]);
        for f in &r.files {
            t.row(vec![
                format!("{:o}", f.mode),
                dir.join(&f.path).display().to_string(),
            ]);
        }
        print!("{}", t.render());
        if r.files.is_empty() {
            println!("(no files: the environment has no registry that needs trust settings)");
        }
    }
    Ok(())
}

pub(super) async fn pull_secret(
    client: &ClientArgs,
    env: &str,
    name: &str,
    namespace: &str,
) -> Result<()> {
    let conn = connect(client).await?;
    let r = conn
        .answer(conn.pulls().get_pull_secret(pb::GetPullSecretRequest {
            min_revision: 0,
            environment_id: env.to_owned(),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
        }))
        .await?;
    if client.json {
        print_json(&serde_json::json!({
            "secretManifest": r.secret_manifest,
            "dockerConfigJson": r.docker_config_json,
            "revision": r.revision.to_string(),
        }));
    } else {
        // The manifest as is, ready for `kubectl apply -f -`.
        println!("{}", r.secret_manifest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_file_paths_must_stay_under_the_directory() {
        assert!(safe_relative("certs.d/reg:5000/ca.crt").is_ok());
        assert!(safe_relative("daemon.json").is_ok());
        for bad in ["", "/etc/passwd", "../x", "certs.d/../../x", "./x"] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn files_are_written_with_their_mode_and_directories() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), Path::new("a/b/c.toml"), 0o600, "x = 1\n").unwrap();
        let path = dir.path().join("a/b/c.toml");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x = 1\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
