//! gRPC calls as raw bytes: hostile-input tests send bytes no message
//! encodes, and load generators encode each request once before the load
//! and compare each answer byte for byte with an answer decoded and checked
//! once, so that they spend their core on the transport, not on protobuf.

use bytes::{Buf, BufMut, Bytes};
use tonic::client::Grpc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Request, Status, Streaming};

/// Messages as their encoded bytes, both ways.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

/// Writes a message's bytes as they are.
#[derive(Debug)]
pub struct RawEncoder;

/// Reads a message's bytes as they are.
#[derive(Debug)]
pub struct RawDecoder;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A unary method with its request bytes and the bearer token it is sent
/// with, both made once.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method's path, `/package.Service/Method`.
    pub path: &'static str,
    /// `Bearer <token>`, or none.
    pub authorization: Option<MetadataValue<Ascii>>,
    /// The encoded request.
    pub body: Bytes,
}

impl Call {
    /// A call of `path` with `message` encoded, as `token` when given.
    pub fn new(path: &'static str, token: Option<&str>, message: &impl prost::Message) -> Self {
        Self::raw(path, token, message.encode_to_vec())
    }

    /// A call of `path` with `body` as it is, as `token` when given.
    pub fn raw(path: &'static str, token: Option<&str>, body: Vec<u8>) -> Self {
        Self {
            path,
            authorization: token.map(|t| format!("Bearer {t}").parse().unwrap()),
            body: body.into(),
        }
    }

    /// Sends the call on `grpc`; returns the answer's bytes.
    pub async fn send(&self, grpc: &mut Grpc<Channel>) -> Result<Bytes, Status> {
        let request = self.request(grpc).await?;
        let path = PathAndQuery::from_static(self.path);
        Ok(grpc.unary(request, path, Raw).await?.into_inner())
    }

    /// Opens the call as a server stream on `grpc`; yields each message's
    /// bytes.
    pub async fn stream(&self, grpc: &mut Grpc<Channel>) -> Result<Streaming<Bytes>, Status> {
        let request = self.request(grpc).await?;
        let path = PathAndQuery::from_static(self.path);
        Ok(grpc
            .server_streaming(request, path, Raw)
            .await?
            .into_inner())
    }

    async fn request(&self, grpc: &mut Grpc<Channel>) -> Result<Request<Bytes>, Status> {
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut request = Request::new(self.body.clone());
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}
