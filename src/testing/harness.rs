//! A server running in this process on 127.0.0.1 and a free port, started
//! by `server::run` exactly as `main` starts it.

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;

use crate::config::ServeConfig;
use crate::server::{self, Error, Overrides, ADMIN_TOKEN_FILE};

/// A server running in this process, for tests.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The bootstrap admin token (or the configured one).
    pub admin_token: String,
    /// Its configuration.
    pub config: ServeConfig,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), Error>>>,
}

impl Running {
    /// Starts `server::run` for `config` on 127.0.0.1 and a free port, and
    /// returns once it serves (or with the error that stopped its start).
    pub async fn start(config: ServeConfig, mut overrides: Overrides) -> Result<Self, Error> {
        let listener_error = |source| Error::DataDir {
            path: PathBuf::from("listener"),
            source,
        };
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(listener_error)?;
        let addr = listener.local_addr().map_err(listener_error)?;
        let (ready, serving) = tokio::sync::oneshot::channel();
        overrides.ready = Some(ready);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(server::run(config.clone(), listener, shutdown, overrides));
        if serving.await.is_err() {
            // `run` dropped the signal without sending it: it ended early.
            return match task.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err(listener_error(std::io::Error::other(
                    "the server stopped before it served",
                ))),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => Err(listener_error(std::io::Error::other(e.to_string()))),
            };
        }
        let admin_token = std::fs::read_to_string(config.data_dir.join(ADMIN_TOKEN_FILE))
            .map(|t| t.trim().to_owned())
            .or_else(|_| config.admin_token.as_ref().map(|t| t.0.clone()).ok_or(()))
            .unwrap_or_default();
        Ok(Self {
            addr,
            admin_token,
            config,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Returns the URL clients connect to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits until its store is closed.
    pub async fn stop(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            // A panic in the server is no clean stop: it reaches the caller.
            Some(task) => match task.await {
                Ok(result) => result,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Ok(()),
            },
            None => Ok(()),
        }
    }
}
