//! `snix.store.v1.PathInfoService` over any [`PathInfoService`] and
//! [`NarCalculationService`].

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use storefs_castore::{Entry, PathComponent, proto as castore_proto};
use storefs_store::DIGEST_LEN;
use storefs_store::proto::PathInfo as PathInfoProto;
use storefs_store::{NarCalculationService, PathInfoService};
use tonic::{Request, Response, Status};

use crate::pathinfo_conv;
use crate::proto::store::{
    CalculateNarResponse, GetPathInfoRequest, ListPathInfoRequest, get_path_info_request,
    path_info_service_server,
};
use crate::status::to_status;

/// Serves path infos and NAR calculations.
pub(crate) struct PathInfoServer {
    path_info: Arc<dyn PathInfoService>,
    nar: Arc<dyn NarCalculationService>,
}

impl PathInfoServer {
    pub(crate) fn new(
        path_info: Arc<dyn PathInfoService>,
        nar: Arc<dyn NarCalculationService>,
    ) -> Self {
        Self { path_info, nar }
    }
}

/// Name used for an anonymous node (snix sends `CalculateNAR` with an empty
/// name); the name does not enter the NAR.
const ANONYMOUS: &str = "anonymous";

/// The node of a `CalculateNAR` request, whose name may be empty.
fn anonymous_entry(mut msg: castore_proto::Entry) -> Result<Entry, Status> {
    use castore_proto::entry::Entry as E;
    let name = match msg.entry.as_mut() {
        Some(E::Directory(d)) => &mut d.name,
        Some(E::File(f)) => &mut f.name,
        Some(E::Symlink(s)) => &mut s.name,
        None => {
            return Err(Status::invalid_argument(
                "CalculateNAR: the entry holds no node",
            ));
        }
    };
    if name.is_empty() {
        *name = Bytes::from_static(ANONYMOUS.as_bytes());
    }
    debug_assert!(PathComponent::try_from(ANONYMOUS).is_ok());
    Entry::try_from(msg).map_err(|e| Status::invalid_argument(format!("CalculateNAR: entry: {e}")))
}

#[tonic::async_trait]
impl path_info_service_server::PathInfoService for PathInfoServer {
    #[tracing::instrument(skip_all)]
    async fn get(
        &self,
        request: Request<GetPathInfoRequest>,
    ) -> Result<Response<PathInfoProto>, Status> {
        let Some(get_path_info_request::ByWhat::ByOutputHash(raw)) = request.into_inner().by_what
        else {
            return Err(Status::invalid_argument("Get: by_what is not set"));
        };
        let digest: [u8; DIGEST_LEN] = raw.as_ref().try_into().map_err(|_| {
            Status::invalid_argument(format!(
                "Get: by_output_hash is {} bytes, expected {DIGEST_LEN}",
                raw.len()
            ))
        })?;
        let op = format!("Get {}", hex::encode(digest));
        let info = self
            .path_info
            .get(digest)
            .await
            .map_err(|e| to_status(&op, e))?
            .ok_or_else(|| Status::not_found(format!("{op}: no such store path")))?;
        Ok(Response::new(pathinfo_conv::to_proto(&info)))
    }

    #[tracing::instrument(skip_all, fields(path))]
    async fn put(
        &self,
        request: Request<PathInfoProto>,
    ) -> Result<Response<PathInfoProto>, Status> {
        let info = pathinfo_conv::from_proto(request.into_inner())
            .map_err(|e| Status::invalid_argument(format!("Put: path info: {e}")))?;
        tracing::Span::current().record("path", tracing::field::display(&info.store_path));
        let op = format!("Put {}", info.store_path);
        let stored = self
            .path_info
            .put(info)
            .await
            .map_err(|e| to_status(&op, e))?;
        Ok(Response::new(pathinfo_conv::to_proto(&stored)))
    }

    #[tracing::instrument(skip_all)]
    async fn calculate_nar(
        &self,
        request: Request<castore_proto::Entry>,
    ) -> Result<Response<CalculateNarResponse>, Status> {
        let entry = anonymous_entry(request.into_inner())?;
        let (nar_size, sha) = self
            .nar
            .calculate_nar(&entry.node)
            .await
            .map_err(|e| to_status("CalculateNAR", e))?;
        Ok(Response::new(CalculateNarResponse {
            nar_size,
            nar_sha256: Bytes::copy_from_slice(&sha),
        }))
    }

    type ListStream = BoxStream<'static, Result<PathInfoProto, Status>>;

    #[tracing::instrument(skip_all)]
    async fn list(
        &self,
        _request: Request<ListPathInfoRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let stream = self.path_info.list().map(|r| {
            r.map(|info| pathinfo_conv::to_proto(&info))
                .map_err(|e| to_status("List", e))
        });
        Ok(Response::new(stream.boxed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storefs_castore::{B3Digest, Node};

    #[test]
    fn calculate_nar_accepts_an_empty_name() {
        let msg = Entry::new(
            PathComponent::try_from("x").unwrap(),
            Node::File {
                digest: B3Digest::of(b""),
                size: 0,
                executable: false,
            },
        )
        .to_proto();
        let mut anon = msg.clone();
        if let Some(castore_proto::entry::Entry::File(f)) = anon.entry.as_mut() {
            f.name = Bytes::new();
        }
        let e = anonymous_entry(anon).unwrap();
        assert_eq!(e.node, Entry::try_from(msg).unwrap().node);
        let err = anonymous_entry(castore_proto::Entry { entry: None }).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
}
