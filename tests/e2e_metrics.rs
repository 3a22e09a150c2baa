//! A real Prometheus (Debian's `prometheus`) scrapes registrar's
//! `--metrics-listen` on loopback; after N ResolvePulls its HTTP query API
//! returns N for the pull counter and for the gRPC handled counter.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, try_http_get, Fixture, TestServer};
use registrar::pb;

/// Prometheus on a loopback port with a 1 s scrape of `target`, stopped
/// (and its directory removed) on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: registrar\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "prometheus could not be started ({e}): this test needs Debian's \
                     `prometheus` package (apt-get install prometheus)"
                )
            });
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    /// The values of an instant query, by their metric's labels.
    async fn query(&self, promql: &str) -> Vec<(serde_json::Value, String)> {
        let Ok((200, text)) = try_http_get(
            self.addr,
            &format!("/api/v1/query?query={}", percent_encode(promql)),
        )
        .await
        else {
            return Vec::new();
        };
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else {
            return Vec::new();
        };
        json["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["metric"].clone(),
                    r["value"][1].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Waits (at most 60 s) until `promql` has exactly the value `want`.
    async fn wait_for(&self, promql: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            seen = self.query(promql).await;
            if seen.len() == 1 && seen[0].1 == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("Prometheus never answered {want} for {promql}; last answer: {seen:?}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn prometheus_scrapes_the_pulls_it_was_told_of() {
    const N: usize = 25;
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let server = TestServer::start_with(move |c| c.metrics_listen = Some(metrics)).await;
    let mut f = Fixture::with_server(server, pb::Orchestration::Kubernetes).await;
    f.registry("r.example.com", "u", "p").await;
    let prometheus = Prometheus::start(metrics);
    prometheus.wait_for(r#"up{job="registrar"}"#, "1").await;

    let mut agent = f.agent().await;
    for _ in 0..N {
        let answer = agent.resolve("", "r.example.com/app").await.unwrap();
        common::allowed(&answer);
    }
    prometheus
        .wait_for(
            r#"registrar_resolve_pull_total{job="registrar",orchestration="kubernetes",result="allowed"}"#,
            &N.to_string(),
        )
        .await;
    prometheus
        .wait_for(
            r#"grpc_server_handled_total{job="registrar",grpc_service="registrar.v1.PullService",grpc_method="ResolvePull",grpc_code="OK"}"#,
            &N.to_string(),
        )
        .await;
    let histogram = prometheus
        .query(r#"grpc_server_handling_seconds_count{grpc_method="ResolvePull"}"#)
        .await;
    assert_eq!(histogram.len(), 1, "{histogram:?}");
    assert_eq!(histogram[0].1, N.to_string());
}
