//! etcd 3.4 as a reference: one member started on loopback (Debian's
//! `etcd-server`) and its `Put` spoken over gRPC without a client crate.

use std::process::{Child, Stdio};
use std::time::Duration;

use tonic::transport::Channel;

/// etcd's `PutRequest` and `PutResponse` (etcdserverpb, rpc.proto): the
/// two fields a Put needs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(int64, tag = "3")]
    pub revision: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// A one-member etcd, killed on drop.
pub struct Etcd {
    child: Child,
    pub url: String,
}

impl Etcd {
    /// The etcd process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a one-member etcd on loopback with its data in `dir`, on the CPU
/// `SERVER_CPU` names when set (as the registrar server), and waits until a
/// Put succeeds.
pub async fn start_etcd(dir: &std::path::Path) -> Etcd {
    let (client, peer) = (super::free_port(), super::free_port());
    let spawned = super::pinned("etcd")
        .args([
            "--name",
            "bench",
            "--data-dir",
            &dir.join("etcd").display().to_string(),
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{client}"),
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-cluster",
            &format!("bench=http://127.0.0.1:{peer}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(e) => panic!(
            "etcd is the reference and was not found: install Debian's etcd-server \
             (apt-get install etcd-server), which puts etcd on the PATH: {e}"
        ),
    };
    let mut etcd = Etcd {
        child,
        url: format!("http://127.0.0.1:{client}"),
    };
    for _ in 0..200 {
        if let Ok(ch) = Channel::from_shared(etcd.url.clone())
            .unwrap()
            .connect()
            .await
        {
            if put(&ch, b"ready".to_vec(), b"1".to_vec()).await.is_ok() {
                return etcd;
            }
        }
        if let Ok(Some(status)) = etcd.child.try_wait() {
            panic!("etcd exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("etcd did not start");
}

/// One etcd `Put`.
pub async fn put(ch: &Channel, key: Vec<u8>, value: Vec<u8>) -> Result<PutResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(PutRequest { key, value }),
        http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put"),
        tonic_prost::ProstCodec::<PutRequest, PutResponse>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}
