//! [`PathInfoService`] and [`NarCalculationService`] over gRPC.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use storefs_castore::{Entry, Error, Node, PathComponent, Result};
use storefs_store::DIGEST_LEN;
use storefs_store::PathInfo;
use storefs_store::{NarCalculationService, PathInfoService};
use tonic::Code;

use super::Conn;
use super::call::{error, next_message, request, retry};
use crate::pathinfo_conv;
use crate::proto::store::{GetPathInfoRequest, ListPathInfoRequest, get_path_info_request};

/// Path infos of a remote service, and its NAR calculation. Cheap to clone;
/// clones share the connection.
#[derive(Clone)]
pub struct GrpcPathInfoService {
    conn: Conn,
}

impl GrpcPathInfoService {
    pub(crate) fn new(conn: Conn) -> Self {
        Self { conn }
    }

    fn invalid(&self, op: &str, why: impl Into<storefs_castore::BoxError>) -> Error {
        Error::remote(
            format!("{} {op}: invalid path info received", self.conn.name),
            why,
        )
    }
}

#[async_trait]
impl PathInfoService for GrpcPathInfoService {
    async fn get(&self, digest: [u8; DIGEST_LEN]) -> Result<Option<PathInfo>> {
        let conn = &self.conn;
        let op = format!("PathInfoService/Get {}", hex::encode(digest));
        let answer = retry(conn, || {
            let mut client = conn.path_info_client();
            let req = request(
                conn,
                GetPathInfoRequest {
                    by_what: Some(get_path_info_request::ByWhat::ByOutputHash(
                        Bytes::copy_from_slice(&digest),
                    )),
                },
            );
            async move { client.get(req).await }
        })
        .await;
        let msg = match answer {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::NotFound => return Ok(None),
            Err(s) => return Err(error(conn, &op, &s)),
        };
        let info = pathinfo_conv::from_proto(msg).map_err(|e| self.invalid(&op, e))?;
        if *info.store_path.digest() != digest {
            return Err(self.invalid(&op, format!("asked for one path, got {}", info.store_path)));
        }
        Ok(Some(info))
    }

    async fn put(&self, info: PathInfo) -> Result<PathInfo> {
        let conn = &self.conn;
        let op = format!("PathInfoService/Put {}", info.store_path);
        let msg = pathinfo_conv::to_proto(&info);
        // Recording the same path info twice is harmless, so retry.
        let answer = retry(conn, || {
            let mut client = conn.path_info_client();
            let req = request(conn, msg.clone());
            async move { client.put(req).await }
        })
        .await
        .map_err(|s| error(conn, &op, &s))?;
        let stored =
            pathinfo_conv::from_proto(answer.into_inner()).map_err(|e| self.invalid(&op, e))?;
        if stored.store_path != info.store_path {
            return Err(self.invalid(&op, format!("stored {} instead", stored.store_path)));
        }
        Ok(stored)
    }

    fn list(&self) -> BoxStream<'static, Result<PathInfo>> {
        let this = self.clone();
        async_stream::try_stream! {
            let conn = &this.conn;
            let op = "PathInfoService/List";
            let mut stream = retry(conn, || {
                let mut client = conn.path_info_client();
                async move { client.list(tonic::Request::new(ListPathInfoRequest {})).await }
            })
            .await
            .map_err(|s| error(conn, op, &s))?
            .into_inner();
            while let Some(msg) = next_message(conn, &mut stream).await.map_err(|s| error(conn, op, &s))? {
                yield pathinfo_conv::from_proto(msg).map_err(|e| this.invalid(op, e))?;
            }
        }
        .boxed()
    }
}

#[async_trait]
impl NarCalculationService for GrpcPathInfoService {
    async fn calculate_nar(&self, root: &Node) -> Result<(u64, [u8; 32])> {
        let conn = &self.conn;
        let op = "PathInfoService/CalculateNAR";
        // The name does not enter the NAR; snix sends an empty one, and so do
        // we, so that a snix service accepts the request.
        let mut msg = Entry::new(
            PathComponent::try_from("x").map_err(|e| Error::InvalidRequest(e.to_string()))?,
            root.clone(),
        )
        .to_proto();
        match msg.entry.as_mut() {
            Some(storefs_castore::proto::entry::Entry::Directory(d)) => d.name = Bytes::new(),
            Some(storefs_castore::proto::entry::Entry::File(f)) => f.name = Bytes::new(),
            Some(storefs_castore::proto::entry::Entry::Symlink(s)) => s.name = Bytes::new(),
            None => {}
        }
        let answer = retry(conn, || {
            let mut client = conn.path_info_client();
            let req = request(conn, msg.clone());
            async move { client.calculate_nar(req).await }
        })
        .await
        .map_err(|s| error(conn, op, &s))?
        .into_inner();
        let sha: [u8; 32] = answer.nar_sha256.as_ref().try_into().map_err(|_| {
            Error::remote_msg(format!(
                "{} {op}: nar_sha256 is {} bytes, expected 32",
                conn.name,
                answer.nar_sha256.len()
            ))
        })?;
        Ok((answer.nar_size, sha))
    }
}
